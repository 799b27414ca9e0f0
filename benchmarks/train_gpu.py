"""Benchmark: train mini-Xception on the 5,000-image cats-vs-dogs sample, timed per epoch.

Reproduces the book's run (2,000 train / 1,000 validation / 2,000 test images at 180x180,
batch 32, RMSprop 1e-3, flip + rotation 0.1 + zoom 0.2, 100 epochs) with the project's own
code: ``image_classifiers.core.images.decode_images`` to decode, ``models.build_classifier`` to
build and ``training.fit_model`` to train, so what it times is what ``kedro run`` runs. It
needs neither Kedro nor TensorFlow (the GPU machine has JAX only).

On a GPU machine (one H100), from the repository root::

    KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/train_gpu.py \\
        --archive ../shared/datasets/dogs-vs-cats.zip --output benchmarks/results/h100.json

Targets there: steady epoch <= 0.5 s, 100 epochs <= 90 s including compilation, test
accuracy >= 0.89. ``--recipe improved`` trains with conf/improved's parameters instead (the
improved recipe, as ``kedro run --env=improved``); run both recipes for issue #13's figures.
A quick check that it runs on a CPU::

    KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/train_gpu.py \\
        --archive ../shared/datasets/dogs-vs-cats.zip --epochs 1 --limit 64 --image-size 64

It reports: decode time, the host's time to slice one epoch of training batches (the input
pipeline's share of an epoch), first epoch (= compilation + one epoch), steady epoch (median
of the epochs after the second), training wall time (all epochs, compilation included), test
evaluation time, and test accuracy/loss of the best-val_loss weights.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

# Make `image_classifiers` importable from a plain checkout (no pip install needed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _results import write_results

logger = logging.getLogger("benchmark")

# The book's split: per class, [start, stop) of N in <class>.N.jpg.
SPLITS = {"train": (0, 1000), "validation": (1000, 1500), "test": (1500, 2500)}
CLASSES = ("cat", "dog")
CONF = Path(__file__).resolve().parents[1] / "conf"
PARAMETERS_FILE = "parameters_model_training.yml"
RECIPES = ("book", "improved")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/datasets/dogs-vs-cats.zip"))
    parser.add_argument("--inner-archive", default="train.zip", help="'' if not nested")
    parser.add_argument("--architecture", default="mini_xception")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--image-size", type=int, default=180, help="height = width")
    parser.add_argument("--limit", type=int, default=None, help="max images per class per split")
    parser.add_argument(
        "--recipe",
        default="book",
        choices=RECIPES,
        help="training, augmentation and evaluation parameters: conf/base (book) or "
        "conf/base + conf/improved, as kedro run --env=improved",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GROUP.KEY=VALUE",
        help="a recipe parameter replaced, e.g. training.ema=true (a YAML value; repeatable)",
    )
    parser.add_argument("--optimizer", default=None, help="default: the recipe's")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--schedule", default=None, choices=[None, "cosine"])
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--no-augmentation", action="store_true")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(
        "--compile-cache",
        type=Path,
        default=None,
        help="JAX persistent compilation cache folder (a second run then skips compiling)",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    return parser.parse_args(argv)


def recipe_parameters(recipe: str, settings: list[str] = ()) -> dict[str, dict]:
    """The ``training``, ``augmentation`` and ``evaluation`` parameters of ``recipe``, with
    ``settings`` (``group.key=value``) applied.

    Read from the project's conf/ as Kedro merges it (the environment's keys replace single
    values of conf/base), without Kedro: the GPU machine has JAX and PyYAML only.
    """
    import yaml

    base = yaml.safe_load((CONF / "base" / PARAMETERS_FILE).read_text())
    groups = {name: dict(base[name]) for name in ("training", "augmentation", "evaluation")}
    if recipe != "book":
        for name, values in yaml.safe_load((CONF / recipe / PARAMETERS_FILE).read_text()).items():
            if name in groups:  # not image_folders' copies of them
                groups[name].update(values)
    groups["training"].pop("seed")  # ${globals:seed} there; --seed here
    groups["training"].pop("checkpoint_dir", None)  # a benchmark starts afresh every time
    for setting in settings:
        name, _, value = setting.partition("=")
        group, _, key = name.partition(".")
        groups[group][key] = yaml.safe_load(value)
    return groups


def load_splits(args: argparse.Namespace) -> dict[str, dict]:
    """Decode the three splits from the (nested) archive with the data pipeline's decoder."""
    from image_classifiers.core.images import decode_images

    with zipfile.ZipFile(args.archive) as outer:
        inner = (
            zipfile.ZipFile(io.BytesIO(outer.read(args.inner_archive)))
            if args.inner_archive
            else outer
        )
        members = {Path(name).name: name for name in inner.namelist()}
        splits = {}
        with tempfile.TemporaryDirectory() as folder:
            for split, (start, end) in SPLITS.items():
                stop = end if args.limit is None else min(end, start + args.limit)
                files, labels = [], []
                for label, name in enumerate(CLASSES):
                    for n in range(start, stop):
                        member = members.get(f"{name}.{n}.jpg")
                        if member is None:
                            raise SystemExit(f"{args.archive} has no {name}.{n}.jpg")
                        files.append(inner.extract(member, folder))
                        labels.append(label)
                images, kept, failures = decode_images(files, (args.image_size,) * 2)
                if failures:
                    raise SystemExit(f"Undecodable images: {failures[:3]}")
                splits[split] = {
                    "images": images,
                    "labels": np.asarray(labels, dtype=np.int32)[kept],
                    "classes": list(CLASSES),
                }
    return splits


def enable_compile_cache(folder: Path) -> None:
    import keras

    if keras.backend.backend() != "jax":
        logger.warning("--compile-cache only applies to the JAX backend; ignored.")
        return
    import jax

    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def device_description() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices())
    return f"{keras.backend.backend()} on {platform.processor() or platform.machine()}"


def run(args: argparse.Namespace) -> dict:
    import keras

    from image_classifiers.core.models import build_classifier
    from image_classifiers.core.params import TrainingParams
    from image_classifiers.core.probabilities import predicted_labels
    from image_classifiers.core.training import (
        ImageBatches,
        cross_entropy,
        fit_model,
        model_build_scope,
        predict_probabilities,
    )

    if args.compile_cache is not None:
        enable_compile_cache(args.compile_cache)
    started = time.perf_counter()
    splits = load_splits(args)
    decode_seconds = time.perf_counter() - started
    logger.info(
        "Decoded %s images in %.1f s.",
        " / ".join(f"{len(s['labels'])} {name}" for name, s in splits.items()),
        decode_seconds,
    )
    recipe = recipe_parameters(args.recipe, args.set)
    overrides = {
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "schedule": args.schedule,
        "batch_size": args.batch_size,
    }
    training = TrainingParams(
        **recipe["training"],
        **{key: value for key, value in overrides.items() if value is not None},
        epochs=args.epochs,
        mixed_precision=args.mixed_precision,
        steps_per_execution=args.steps_per_execution,
        seed=args.seed,
    )
    augmentation = None if args.no_augmentation else recipe["augmentation"]
    test_time_flip = bool(recipe["evaluation"].get("test_time_flip", False))
    # The host's share of an epoch: slicing the shuffled uint8 batches fit_model feeds.
    batch_size = training.batch_size
    batches = ImageBatches(
        splits["train"]["images"], splits["train"]["labels"], batch_size, shuffle=True
    )
    started = time.perf_counter()
    for index in range(len(batches)):
        batches[index]
    input_seconds = time.perf_counter() - started
    shape = splits["train"]["images"].shape[1:]
    with model_build_scope(training):
        model = build_classifier(args.architecture, shape, len(CLASSES), augmentation=augmentation)

    started = time.perf_counter()
    model, history = fit_model(model, splits["train"], splits["validation"], training)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    probabilities = predict_probabilities(
        model, splits["test"]["images"], batch_size, flip_average=test_time_flip
    )
    test_seconds = time.perf_counter() - started
    test_labels = splits["test"]["labels"]
    epochs = history["epoch_seconds"]
    steady = epochs[2:] or epochs[1:] or epochs
    return {
        "device": device_description(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join([f"KERAS_BACKEND={keras.backend.backend()}", "python", *sys.argv]),
        # TensorFlow reads it at import: oneDNN CPU kernels on (1) or off (0).
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "architecture": args.architecture,
        "parameters": model.count_params(),
        "recipe": args.recipe,
        "settings": args.set,
        "image_size": args.image_size,
        "images": {name: len(s["labels"]) for name, s in splits.items()},
        "training": training.model_dump(mode="json"),
        "augmentation": augmentation,
        "test_time_flip": test_time_flip,
        "decode_seconds": round(decode_seconds, 2),
        "input_seconds_per_epoch": significant(input_seconds),
        "first_epoch_seconds": significant(epochs[0]) if epochs else None,
        "steady_epoch_seconds": significant(statistics.median(steady)) if steady else None,
        "train_wall_seconds": round(train_seconds, 2),
        "test_seconds": round(test_seconds, 2),
        "epochs_run": len(epochs),  # fewer than training.epochs if early stopping ended it
        "best_epoch": int(np.argmin(history["val_loss"])) + 1 if epochs else None,
        "best_val_accuracy": (
            history["val_accuracy"][int(np.argmin(history["val_loss"]))] if epochs else None
        ),
        "test_accuracy": round(float(np.mean(predicted_labels(probabilities) == test_labels)), 4),
        "test_loss": round(cross_entropy(probabilities, test_labels), 4),
        # Per epoch: loss, accuracy, val_loss, val_accuracy, learning_rate, epoch_seconds
        # (plot with image_classifiers.pipelines.model_training.nodes.plot_training_curves).
        "history": {key: [round(v, 5) for v in values] for key, values in history.items()},
    }


def significant(seconds: float, digits: int = 3) -> float:
    """Round a duration to significant digits: a few microseconds must not print as 0.0."""
    return float(f"{seconds:.{digits}g}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before Keras imports TensorFlow
    args = parse_args(argv)
    results = run(args)
    logger.info("---- results ----")
    for key in (
        "device",
        "backend",
        "recipe",
        "architecture",
        "parameters",
        "images",
        "decode_seconds",
        "input_seconds_per_epoch",
        "first_epoch_seconds",
        "steady_epoch_seconds",
        "train_wall_seconds",
        "test_seconds",
        "epochs_run",
        "best_epoch",
        "test_accuracy",
        "test_loss",
    ):
        logger.info("%-22s %s", key, results[key])
    if args.output is not None:
        write_results(args.output, results)


if __name__ == "__main__":
    main()
