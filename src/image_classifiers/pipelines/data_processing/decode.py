"""Decode one split's images once into a uint8 array (the training-ready cache).

The pixels go to disk ``decode.chunk_size`` images at a time, straight into the ``.npy``
file that training memory-maps (staged in ``decode.scratch_dir``, then moved into place by
the catalog), so no split is ever whole in RAM and a split may be larger than memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from image_classifiers.datasets.image_set_dataset import ImagesFileWriter, staged_images_file
from image_classifiers.images import available_cpus, decode_images
from image_classifiers.params import DecodeParams

from .keras_datasets import is_array_row, read_array_rows

logger = logging.getLogger(__name__)

_SHOWN_FAILURES = 20


class DecodeError(ValueError):
    """A manifest that doesn't fit, or, with ``on_bad_image: fail``, undecodable images."""


def decode_split(
    split_manifest: pd.DataFrame, decode: DecodeParams, classes: list[str], subset: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode the images of one subset of the manifest.

    Args:
        split_manifest: Rows ``file, class, subset`` from the split node.
        decode: The ``decode`` parameters.
        classes: Class names; a class's label is its position in this list.
        subset: Which subset to decode, e.g. ``"train"``.

    Returns:
        ``(image_set, quality)``: the image set ``{"images", "labels", "classes", "files"}``
        (images memory-mapped) and ``{"subset", "images", "decoded", "skipped": [{"file",
        "reason"}]}``.

    Raises:
        DecodeError: No images for ``subset``, classes not in ``classes``, or undecodable
            images with ``on_bad_image: fail``.
    """
    rows = split_manifest[split_manifest["subset"] == subset]
    if rows.empty:
        raise DecodeError(
            f"The split manifest has no '{subset}' images; add '{subset}' to split.ranges."
        )
    unknown = sorted(set(rows["class"]) - set(classes))
    if unknown:
        raise DecodeError(
            f"The split manifest has classes {unknown} that are not in split.classes "
            f"{classes}; run the split step again (kedro run --pipelines=data_processing)."
        )
    files = rows["file"].astype(str).tolist()
    labels = rows["class"].map({name: i for i, name in enumerate(classes)}).to_numpy(np.int32)
    workers = decode.workers or available_cpus()
    logger.info(
        "Decoding %d %s images to %dx%d with %d threads...",
        len(files),
        subset,
        *decode.image_size,
        workers,
    )
    start = time.perf_counter()

    def progress(done: int) -> None:
        if done % decode.log_every == 0 or done == len(files):
            rate = done / max(time.perf_counter() - start, 1e-9)
            logger.info("  %s: %d/%d images (%.0f/s)", subset, done, len(files), rate)

    staged = staged_images_file(decode.scratch_dir)
    try:
        kept, skipped = _decode_to_file(files, decode, workers, staged, progress)
        if skipped and decode.on_bad_image == "fail":
            raise DecodeError(_failure_message(subset, skipped))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    for item in skipped:
        logger.warning("Skipped unreadable %s image %s: %s", subset, item["file"], item["reason"])
    logger.info(
        "Decoded %d %s images in %.1f s (%d skipped).",
        len(kept),
        subset,
        time.perf_counter() - start,
        len(skipped),
    )
    image_set = {
        # Read-only memory map of the staged file: ImageSetDataset moves it into place.
        "images": np.load(staged, mmap_mode="r"),
        "labels": labels[kept],
        "classes": list(classes),
        "files": [files[i] for i in kept],
    }
    quality = {"subset": subset, "images": len(files), "decoded": len(kept), "skipped": skipped}
    return image_set, quality


def _decode_to_file(
    files: list[str],
    decode: DecodeParams,
    workers: int,
    path: Path,
    progress: Callable[[int], None],
) -> tuple[list[int], list[dict[str, str]]]:
    """Decode ``files`` chunk by chunk, appending the pixels to ``path``."""
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    writer: ImagesFileWriter | None = None
    try:
        for start in range(0, len(files), decode.chunk_size):
            chunk = files[start : start + decode.chunk_size]
            if is_array_row(chunk[0]):  # keras_datasets: already pixels, in arrays
                images = read_array_rows(chunk, decode.image_size, decode.resample)
                chunk_kept, failures = range(len(chunk)), []
                progress(start + len(chunk))
            else:
                images, chunk_kept, failures = decode_images(
                    chunk,
                    decode.image_size,
                    resample=decode.resample,
                    workers=workers,
                    progress=lambda done, _, start=start: progress(start + done),
                )
            # The first chunk says the channels (keras_datasets may be grayscale).
            writer = writer or ImagesFileWriter(path, images.shape[1:])
            writer.append(images)
            kept.extend(start + i for i in chunk_kept)
            skipped.extend({"file": error.name, "reason": error.reason} for error in failures)
    finally:
        if writer is not None:
            writer.close()
    return kept, skipped


def make_split_decoder(subset: str) -> Callable[..., tuple[dict[str, Any], dict[str, Any]]]:
    """A node function that decodes ``subset`` (Kedro nodes take datasets, not constants)."""

    def decode_subset(
        split_manifest: pd.DataFrame, decode: DecodeParams, classes: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return decode_split(split_manifest, decode, classes, subset)

    decode_subset.__name__ = decode_subset.__qualname__ = f"decode_{subset}_images"
    decode_subset.__doc__ = f"Decode the '{subset}' images (see ``decode_split``)."
    return decode_subset


def report_data_quality(decode: DecodeParams, *qualities: dict[str, Any]) -> dict[str, Any]:
    """Merge the decode nodes' quality records into the data-quality report.

    Returns:
        ``{"image_size", "on_bad_image", "images", "decoded", "skipped_count",
        "splits": {subset: {"images", "decoded", "skipped"}}, "skipped": [{"subset",
        "file", "reason"}]}``.
    """
    skipped = [{"subset": q["subset"], **item} for q in qualities for item in q["skipped"]]
    report = {
        "image_size": list(decode.image_size),
        "on_bad_image": decode.on_bad_image,
        "images": sum(q["images"] for q in qualities),
        "decoded": sum(q["decoded"] for q in qualities),
        "skipped_count": len(skipped),
        "splits": {
            q["subset"]: {k: q[k] for k in ("images", "decoded", "skipped")} for q in qualities
        },
        "skipped": skipped,
    }
    if skipped:
        logger.warning(
            "%d unreadable images were left out; see data/08_reporting/data_quality.json.",
            len(skipped),
        )
    else:
        logger.info("All %d images decoded; no unreadable files.", report["decoded"])
    return report


def _failure_message(subset: str, skipped: list[dict[str, str]]) -> str:
    shown = "\n".join(f"  {s['file']}: {s['reason']}" for s in skipped[:_SHOWN_FAILURES])
    more = len(skipped) - _SHOWN_FAILURES
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return (
        f"{len(skipped)} {subset} images cannot be decoded (decode.on_bad_image=fail):\n"
        f"{shown}{tail}\nFix or delete them and run again, or set "
        "decode.on_bad_image=skip to leave them out (they are then listed in "
        "data/08_reporting/data_quality.json)."
    )
