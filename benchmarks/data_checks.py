"""Benchmark: the data checks pipelines on the sample data, timed, with what they found.

Run from the repository root (targets on 2 CPU cores: MNIST sample < 5 min, cats < 15 min)::

    python benchmarks/flip_labels.py ../shared/datasets/mnist-sample.npz /tmp/mnist-flipped.npz
    python benchmarks/data_checks.py mnist /tmp/mnist-flipped.npz
    python benchmarks/data_checks.py cats ../shared/datasets/dogs-vs-cats.zip

``mnist``: ``kedro run --pipelines=lenet_mnist_checks`` on the file with flipped labels, then
how many flipped rows (``<file>.json``) rank in the top 150 (and top 50) of
``label_issues.csv``. ``cats``: ``kedro run --pipelines=data_checks`` (the main job's split,
1000/500/1000 per class at 180×180), then the near-duplicate pairs and the leakage between
train and test; ``--pairs`` draws the pairs found into a PNG to look at. Wall-clock and CPU
time (all processes) of the whole ``kedro run``, download check and decoding included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _results import write_results

RESULTS = Path(__file__).resolve().parent / "results"


def kedro_run(pipeline: str, params: str) -> dict[str, float]:
    """Run ``kedro run``; its wall-clock and CPU seconds."""
    command = ["kedro", "run", f"--pipelines={pipeline}", f"--params={params}"]
    sys.stdout.write(f"$ {' '.join(command)}\n")
    sys.stdout.flush()
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(cpu, 1)}


def mnist(path: Path) -> dict:
    timing = kedro_run("lenet_mnist_checks", f"mnist.download.local_path={path.resolve()}")
    flipped = {f["row"] for f in json.loads(path.with_suffix(".json").read_text())}
    issues = pd.read_csv("data/08_reporting/lenet_mnist/label_issues.csv", dtype={"file": str})
    rows = issues["file"].str.extract(r"x_train\.npy#(\d+)$")[0].astype(int)
    hits = rows.isin(flipped)
    return {
        **timing,
        "flipped": len(flipped),
        "flipped_in_top_150": int(hits[:150].sum()),
        "flipped_in_top_50": int(hits[:50].sum()),
        "flagged_by_find_label_issues": int(issues["issue"].sum()),
        "flipped_flagged": int((hits & issues["issue"]).sum()),
        "checks": json.loads(Path("data/08_reporting/lenet_mnist/class_balance.json").read_text())[
            "summary"
        ],
    }


def cats(archive: Path, pairs_png: Path | None) -> dict:
    timing = kedro_run("data_checks", f"download.local_path={archive.resolve()}")
    found = pd.read_csv("data/08_reporting/data_checks/near_duplicates.csv")
    splits = found["split_a"] + "/" + found["split_b"]
    train_test = found[splits.isin(["train/test", "test/train"])]
    if pairs_png is not None:
        draw_pairs(found, pairs_png)
    return {
        **timing,
        "pairs": len(found),
        "by_kind": found["kind"].value_counts().to_dict(),
        "leaking_pairs": int(found["leakage"].sum()),
        "leaking_train_test": len(train_test),
        "first_pairs": found.head(20).to_dict("records"),
        "checks": json.loads(Path("data/08_reporting/data_checks/class_balance.json").read_text())[
            "summary"
        ],
    }


def draw_pairs(found: pd.DataFrame, path: Path, count: int = 24) -> None:
    """The first ``count`` pairs side by side."""
    from matplotlib.figure import Figure
    from PIL import Image

    rows = found.head(count)
    figure = Figure(figsize=(4, 2 * max(len(rows), 1)), layout="constrained")
    for i, row in enumerate(rows.itertuples()):
        for j, file in enumerate((row.file_a, row.file_b)):
            axes = figure.add_subplot(len(rows), 2, 2 * i + j + 1)
            axes.imshow(Image.open(file).convert("RGB"))
            axes.set_title(f"{Path(file).name} ({row.kind} {row.correlation:.3f})", fontsize=7)
            axes.axis("off")
    figure.savefig(path, dpi=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["mnist", "cats"])
    parser.add_argument(
        "path", type=Path, help="mnist: the .npz with flipped labels; cats: the zip"
    )
    parser.add_argument("--pairs", type=Path, help="cats: draw the pairs found into this PNG")
    args = parser.parse_args()
    results = mnist(args.path) if args.which == "mnist" else cats(args.path, args.pairs)
    results["machine"] = f"{os.cpu_count()} CPU cores (shared), Python {sys.version.split()[0]}"
    sys.stdout.write(json.dumps(results, indent=1, default=str) + "\n")
    write_results(RESULTS / f"data_checks_{args.which}_cpu_2core.json", results)


if __name__ == "__main__":
    main()
