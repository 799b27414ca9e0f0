"""Benchmark: mini-Xception exported to every format, each file re-scored by its own runtime.

#19's acceptance: on the cats-vs-dogs sample at 64 px (CPU), train a mini-Xception for a few
epochs (this is about the exports, not the accuracy), or take a ``.keras`` file, then export
it with the export pipeline's ``export_formats`` and report per format its size, test accuracy
and change against Keras, label agreement and batch-1 latency (p50/p95)::

    python benchmarks/export.py --archive ../shared/datasets/dogs-vs-cats.zip \\
        --image-size 64 --epochs 12 --output benchmarks/results/export_cpu_2core_64px.json

12 epochs because with 3 the model still predicts one class (test accuracy 0.5: validation
accuracy stayed at 0.50-0.55 until epoch 7 here), and agreement means nothing then.
Splits as ``train_gpu.load_splits`` (``--limit`` images per class per split); the int8
formats calibrate on ``--representative`` training images.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import write_results  # noqa: E402 (benchmarks/ on the path first)

logger = logging.getLogger("export")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/datasets/dogs-vs-cats.zip"))
    parser.add_argument("--inner-archive", default="train.zip", help="'' if not nested")
    parser.add_argument("--model", type=Path, default=None, help="a .keras file: no training")
    parser.add_argument("--image-size", type=int, default=64, help="height = width")
    parser.add_argument("--limit", type=int, default=None, help="max images per class per split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--representative", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.02)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import keras
    from train_gpu import load_splits

    from image_classifiers.core.models import build_classifier, load_model_file
    from image_classifiers.core.params import ExportParams, TrainingParams
    from image_classifiers.core.training import fit_model
    from image_classifiers.pipelines.export.nodes import export_formats

    splits = load_splits(args)
    start = time.perf_counter()
    if args.model:
        model = load_model_file(args.model, compile=False)
    else:
        keras.utils.set_random_seed(1337)
        shape = (args.image_size, args.image_size, 3)
        model = build_classifier("mini_xception", shape, 2, {"horizontal_flip": True})
        training = TrainingParams(epochs=args.epochs, batch_size=args.batch_size)
        model, _ = fit_model(model, splits["train"], splits["validation"], training)
    train_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="export-benchmark-") as folder:
        export = ExportParams(
            model=str(args.model or "mini_xception"),
            output_dir=folder,
            max_accuracy_drop=args.max_accuracy_drop,
            representative_size=args.representative,
            latency_runs=args.latency_runs,
            batch_size=args.batch_size,
        )
        report = export_formats(
            model, "mini_xception", splits["test"], export, train_set=splits["train"]
        )
    results = {
        "machine": f"{platform.machine()} CPU, {keras.backend.backend()} backend",
        "image_size": args.image_size,
        "images": {split: len(s["labels"]) for split, s in splits.items()},
        "epochs": 0 if args.model else args.epochs,
        "train_seconds": round(train_seconds, 1),
        "keras": report["keras"],
        "input": report["input"],
        "formats": {
            fmt: {k: v for k, v in result.items() if k != "file"}
            for fmt, result in report["formats"].items()
        },
    }
    print(f"Keras test accuracy {report['keras']['test_accuracy']:.4f}")  # noqa: T201
    print("| format | status | MB | accuracy change | agreement | p50 ms | p95 ms |")  # noqa: T201
    for fmt, r in results["formats"].items():
        if r["status"] != "ok":
            print(f"| {fmt} | refused: {r['reason']} | | | | | |")  # noqa: T201
            continue
        print(  # noqa: T201
            f"| {fmt} | ok | {r['bytes'] / 1e6:.2f} | {r['accuracy_change']:+.4f} | "
            f"{r['agreement']:.4f} | {r['latency_p50_ms']:.2f} | {r['latency_p95_ms']:.2f} |"
        )
    if args.output:
        write_results(args.output, results)
    return results


if __name__ == "__main__":
    main()
