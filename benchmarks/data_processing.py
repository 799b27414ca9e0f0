"""Benchmark: extract + split + decode the 5,000-image dogs-vs-cats sample.

Run from the repository root (target: extract + split + decode <= 15 s on 2 CPU cores)::

    .venv/bin/python benchmarks/data_processing.py ../shared/datasets/dogs-vs-cats.zip --repeat 5

Each repeat works in a fresh temp folder with the pipeline's own node functions and the
default parameters (180x180, bilinear, one decoding thread per core): the archive check
(download node with ``local_path``: zip + sha256), extraction of the nested archive,
the split copy, decoding every split, and -- reported apart, as it is disk speed rather
than decoding -- writing the decoded sets with ``ImageSetDataset``. Prints each stage's
best and median wall-clock seconds, and the CPU time used (all threads). Other processes
on the machine skew the wall-clock figures: run it when the machine is quiet and look at
the best.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from image_classifiers.core.data.download import download_archive
from image_classifiers.core.data.extract import extract_images
from image_classifiers.core.data.split import split_kaggle_names
from image_classifiers.core.images import available_cpus
from image_classifiers.core.params import DecodeParams, DownloadParams, ExtractParams, SplitParams
from image_classifiers.datasets import ImageSetDataset
from image_classifiers.pipelines.data_processing.nodes import decode_split

CLASSES = ["cat", "dog"]
RANGES = {"train": [0, 1000], "validation": [1000, 1500], "test": [1500, 2500]}
STAGES = (
    "verify archive",
    "extract",
    "split",
    "decode",
    "extract+split+decode",
    "save sets",
    "CPU time, all stages",
)


def run_once(archive: Path, workdir: Path, image_size: tuple[int, int]) -> dict[str, float]:
    """One pass through the pipeline's steps; returns seconds per stage."""
    seconds: dict[str, float] = {}
    cpu_start = time.process_time()  # all threads: what the work costs on an idle machine

    def timed(stage: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
        return result

    record = timed(
        "verify archive",
        lambda: download_archive(DownloadParams(local_path=str(archive), archive_path="unused")),
    )
    extract = ExtractParams(
        inner_archive="train.zip",
        extensions=[".jpg", ".jpeg", ".png"],
        target_dir=str(workdir / "01_raw"),
    )
    extracted = timed("extract", lambda: extract_images(record, extract))
    split = SplitParams(classes=CLASSES, ranges=RANGES, target_dir=str(workdir / "02_split"))
    manifest, _ = timed("split", lambda: split_kaggle_names(extracted, split))
    decode = DecodeParams(image_size=list(image_size), on_bad_image="skip", log_every=10**9)
    for subset in RANGES:
        image_set, _ = timed("decode", lambda s=subset: decode_split(manifest, decode, CLASSES, s))
        dataset = ImageSetDataset(str(workdir / "05_model_input" / subset))
        timed("save sets", lambda d=dataset, i=image_set: d.save(i))
        del image_set  # one split in memory at a time, as in the pipeline
    seconds["extract+split+decode"] = seconds["extract"] + seconds["split"] + seconds["decode"]
    seconds["CPU time, all stages"] = time.process_time() - cpu_start
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "archive",
        nargs="?",
        default="../shared/datasets/dogs-vs-cats.zip",
        type=Path,
        help="the nested dogs-vs-cats archive (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes (default: %(default)s)")
    parser.add_argument("--size", type=int, nargs=2, default=(180, 180), metavar=("H", "W"))
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: $TMPDIR)")
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        parser.error(f"no archive at {args.archive}; pass its path as the first argument")
    logging.basicConfig(level=logging.WARNING)

    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="dp-bench-", dir=args.tmp) as workdir:
            runs.append(run_once(args.archive, Path(workdir), tuple(args.size)))
        _emit(f"pass {i + 1}/{args.repeat}: extract+split+decode {runs[-1][STAGES[4]]:.2f} s")

    _emit(
        f"\n{args.archive} -> 5,000 images at {args.size[0]}x{args.size[1]}, "
        f"{available_cpus()} CPU cores, {args.repeat} passes"
    )
    _emit(f"{'stage':<22}{'best s':>9}{'median s':>10}")
    for stage in STAGES:
        values = [run[stage] for run in runs]
        _emit(f"{stage:<22}{min(values):>9.2f}{statistics.median(values):>10.2f}")
    return 0


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
