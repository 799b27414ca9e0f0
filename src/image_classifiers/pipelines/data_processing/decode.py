"""Decode one split's images once into a uint8 array (the training-ready cache).

The pixels go to disk ``decode.chunk_size`` images at a time, straight into the ``.npy``
file that training memory-maps (staged in ``decode.scratch_dir``, then moved into place by
the catalog), so no split is ever whole in RAM and a split may be larger than memory. A
file that cannot be decoded is skipped (and reported) or fails the run, as
``decode.on_bad_image`` says.
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
from image_classifiers.images import UnreadableImageError, available_cpus, decode_images
from image_classifiers.params import DecodeParams

from .keras_datasets import decode_array_rows, is_array_reference

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
        decode: The ``decode`` parameters (``DecodeParams``; a dict is validated):
            ``image_size`` ([height, width]), ``on_bad_image`` (skip | fail),
            ``resample`` (PIL filter name), ``workers`` (threads; null = one per core),
            ``log_every`` (images between progress lines).
        classes: Class names; a class's label is its position in this list.
        subset: Which subset to decode, e.g. ``"train"``.

    Returns:
        ``(image_set, quality)``: the image set ``{"images", "labels", "classes", "files"}``
        and ``{"subset", "images", "decoded", "skipped": [{"file", "reason"}]}``.

    Raises:
        DecodeError: No images for ``subset``, or undecodable images with
            ``on_bad_image: fail``.
    """
    options = DecodeParams.coerce(decode)
    workers = options.workers or available_cpus()
    rows = split_manifest[split_manifest["subset"] == subset]
    if rows.empty:
        raise DecodeError(
            f"The split manifest has no '{subset}' images; add '{subset}' to split.ranges."
        )
    class_index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(rows["class"]) - set(class_index))
    if unknown:
        raise DecodeError(
            f"The split manifest has classes {unknown} that are not in split.classes "
            f"{classes}; run the split step again (kedro run --pipelines=data_processing)."
        )
    files = rows["file"].astype(str).tolist()
    labels = rows["class"].map(class_index).to_numpy(dtype=np.int32)

    logger.info(
        "Decoding %d %s images to %dx%d with %d threads...",
        len(files),
        subset,
        *options.image_size,
        workers,
    )
    start = time.perf_counter()
    # keras_datasets rows are already pixels, in arrays the extract step wrote.
    reader = decode_array_rows if files and is_array_reference(files[0]) else decode_images
    staged = staged_images_file(options.scratch_dir)
    try:
        kept, failures = _decode_to_file(
            reader,
            files,
            options.model_copy(update={"workers": workers}),
            staged,
            _progress_logger(subset, options.log_every, start),
        )
        skipped = [{"file": error.name, "reason": error.reason} for error in failures]
        if skipped and options.on_bad_image == "fail":
            raise DecodeError(_failure_message(subset, skipped))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    # Read-only memory map of the staged file: ImageSetDataset moves it into place.
    images = np.load(staged, mmap_mode="r")
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
        "images": images,
        "labels": labels[kept],
        "classes": list(classes),
        "files": [files[i] for i in kept],
    }
    quality = {"subset": subset, "images": len(files), "decoded": len(kept), "skipped": skipped}
    return image_set, quality


def _decode_to_file(
    reader: Callable[..., tuple[np.ndarray, list[int], list[UnreadableImageError]]],
    files: list[str],
    options: DecodeParams,
    path: Path,
    progress: Callable[[int, int], None],
) -> tuple[list[int], list[UnreadableImageError]]:
    """Decode ``files`` chunk by chunk with ``reader``, appending the pixels to ``path``."""
    kept: list[int] = []
    failures: list[UnreadableImageError] = []
    total, chunk = len(files), options.chunk_size
    writer: ImagesFileWriter | None = None
    try:
        for start in range(0, total, chunk):
            images, chunk_kept, chunk_failures = reader(
                files[start : start + chunk],
                options.image_size,
                resample=options.resample,
                workers=options.workers,
                progress=lambda done, _, start=start: progress(start + done, total),
            )
            # The first chunk says the channels (keras_datasets may be grayscale).
            writer = writer or ImagesFileWriter(path, images.shape[1:])
            writer.append(images)
            kept.extend(start + i for i in chunk_kept)
            failures.extend(chunk_failures)
    finally:
        if writer is not None:
            writer.close()
    return kept, failures


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
    """Merge the per-split quality records into the data-quality report.

    Args:
        decode: The ``decode`` parameters (recorded in the report).
        *qualities: The ``quality`` records of the decode nodes.

    Returns:
        ``{"image_size", "on_bad_image", "images", "decoded", "skipped_count",
        "splits": {subset: {"images", "decoded", "skipped"}}, "skipped": [{"subset",
        "file", "reason"}]}``.
    """
    options = DecodeParams.coerce(decode)
    splits = {q["subset"]: {k: q[k] for k in ("images", "decoded", "skipped")} for q in qualities}
    skipped = [{"subset": q["subset"], **item} for q in qualities for item in q["skipped"]]
    report = {
        "image_size": list(options.image_size),
        "on_bad_image": options.on_bad_image,
        "images": sum(q["images"] for q in qualities),
        "decoded": sum(q["decoded"] for q in qualities),
        "skipped_count": len(skipped),
        "splits": splits,
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


def _progress_logger(subset: str, every: int, start: float) -> Callable[[int, int], None]:
    def log(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            rate = done / max(time.perf_counter() - start, 1e-9)
            logger.info("  %s: %d/%d images (%.0f/s)", subset, done, total, rate)

    return log


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
