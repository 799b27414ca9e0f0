"""Node functions of the data_processing pipeline: download -> extract -> split -> decode.

One node per step whatever the ``source`` (``kaggle_names``, ``class_folders``,
``keras_datasets``), so the pipeline looks the same for every dataset. Decoding writes
``decode.chunk_size`` images at a time into the staged ``.npy`` file that training
memory-maps, so a split may be larger than RAM.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from image_classifiers.core.data.checks import apply_exclusions, drop_duplicates
from image_classifiers.core.data.download import download_archive
from image_classifiers.core.data.extract import extract_images
from image_classifiers.core.data.inputs import input_files
from image_classifiers.core.data.keras_datasets import (
    extract_keras_dataset,
    fetch_keras_dataset,
    is_array_row,
    read_array_rows,
    split_keras_dataset,
)
from image_classifiers.core.data.split import split_class_folders, split_kaggle_names
from image_classifiers.core.images import decode_images
from image_classifiers.core.params import (
    DecodeParams,
    DownloadParams,
    ExtractParams,
    SourceParams,
    SplitParams,
)
from image_classifiers.datasets.image_set_dataset import ImagesFileWriter, staged_images_file

logger = logging.getLogger(__name__)


class DecodeError(ValueError):
    """A manifest that doesn't fit, or, with ``on_bad_image: fail``, undecodable images."""


class SourceError(ValueError):
    """The ``source`` parameters lack what the source needs; the message says what to do."""


def download_data(download: DownloadParams, source: SourceParams) -> dict[str, Any]:
    """Make the raw data available locally and describe it (a folder of class folders is
    used in place)."""
    if source.type == "keras_datasets":
        return fetch_keras_dataset(download, source.name)
    if source.type == "class_folders":
        if not (download.local_path or download.url or download.gdrive_id):
            raise SourceError(
                "No class folders given: point download.local_path at a folder (or zip) "
                "holding one folder per class, e.g. kedro run --pipelines=image_folders "
                '--params="image_folders.download.local_path=/abs/path/PetImages.zip".'
            )
        if download.local_path and (folder := Path(download.local_path).expanduser()).is_dir():
            logger.info("Using the class folders in %s in place.", folder)
            return {"path": str(folder), "sha256": None, "source": "local_path", "folder": True}
    return download_archive(download)


def extract_data(
    raw_archive: dict[str, Any], extract: ExtractParams, source: SourceParams
) -> dict[str, Any]:
    """Extract the images (or write a Keras dataset's arrays) that the split step reads."""
    if source.type == "keras_datasets":
        return extract_keras_dataset(raw_archive, extract)
    if raw_archive.get("folder"):
        extensions = sorted({e.lower() for e in extract.extensions})
        # Links out of the folder and special files: never read, listed in the report.
        _, skipped = input_files(Path(raw_archive["path"]), extensions)
        for item in skipped:
            logger.warning("Skipped %s: %s", item["file"], item["reason"])
        extracted = {"path": raw_archive["path"], "archive": None, "extensions": extensions}
        return {**extracted, "skipped": skipped}
    return extract_images(raw_archive, extract)


def split_data(
    extracted_images: dict[str, Any], split: SplitParams, source: SourceParams
) -> tuple[pd.DataFrame, list[str]]:
    """Assign every image to one subset: the manifest and the class names in label order,
    without ``split.exclude`` and, with ``split.drop_duplicates``, without copies."""
    splitter = {
        "kaggle_names": split_kaggle_names,
        "class_folders": split_class_folders,
        "keras_datasets": split_keras_dataset,
    }[source.type]
    manifest, classes = splitter(extracted_images, split)
    manifest = apply_exclusions(manifest, split)
    if split.drop_duplicates:
        manifest = drop_duplicates(manifest, split)
    for subset, rows in manifest.groupby("subset"):
        if absent := sorted(set(classes) - set(rows["class"])):
            logger.warning("The %s split has no images of classes %s.", subset, absent)
    return manifest, classes


def decode_split(
    split_manifest: pd.DataFrame, decode: DecodeParams, classes: list[str], subset: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode one subset of the manifest into a memory-mapped uint8 array: ``(image_set,
    quality)``; a class's label is its position in ``classes``."""
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
    logger.info("Decoding %d %s images to %dx%d...", len(files), subset, *decode.image_size)
    start = time.perf_counter()

    def progress(done: int) -> None:
        if done % decode.log_every == 0 or done == len(files):
            rate = done / max(time.perf_counter() - start, 1e-9)
            logger.info("  %s: %d/%d images (%.0f/s)", subset, done, len(files), rate)

    staged = staged_images_file(decode.scratch_dir)
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    writer = None
    try:
        for first in range(0, len(files), decode.chunk_size):
            chunk = files[first : first + decode.chunk_size]
            if is_array_row(chunk[0]):  # keras_datasets: already pixels, in arrays
                images = read_array_rows(chunk, decode.image_size, decode.resample)
                chunk_kept, failures = range(len(chunk)), []
                progress(first + len(chunk))
            else:
                images, chunk_kept, failures = decode_images(
                    chunk,
                    decode.image_size,
                    resample=decode.resample,
                    workers=decode.workers,
                    progress=lambda done, _, first=first: progress(first + done),
                )
            # The first chunk says the channels (keras_datasets may be grayscale).
            writer = writer or ImagesFileWriter(staged, images.shape[1:])
            writer.append(images)
            kept += [first + i for i in chunk_kept]
            skipped += [{"file": error.name, "reason": error.reason} for error in failures]
        writer.close()
        if skipped and decode.on_bad_image == "fail":
            shown = "".join(f"\n  {s['file']}: {s['reason']}" for s in skipped[:20])
            more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            raise DecodeError(
                f"{len(skipped)} {subset} images cannot be decoded (decode.on_bad_image=fail):"
                f"{shown}{more}\nFix or delete them and run again, or set "
                "decode.on_bad_image=skip to leave them out (they are then listed in "
                "data/08_reporting/data_quality.json)."
            )
    except BaseException:
        if writer is not None:
            writer.close()
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
        "images": np.load(staged, mmap_mode="r"),
        "labels": labels[kept],
        "classes": list(classes),
        "files": [files[i] for i in kept],
    }
    quality = {"subset": subset, "images": len(files), "decoded": len(kept), "skipped": skipped}
    return image_set, quality


def make_split_decoder(subset: str) -> Callable[..., tuple[dict[str, Any], dict[str, Any]]]:
    """A node function that decodes ``subset`` (Kedro nodes take datasets, not constants)."""

    def decode_subset(
        split_manifest: pd.DataFrame, decode: DecodeParams, classes: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return decode_split(split_manifest, decode, classes, subset)

    decode_subset.__name__ = decode_subset.__qualname__ = f"decode_{subset}_images"
    return decode_subset


def report_data_quality(
    decode: DecodeParams, extracted_images: dict[str, Any], *qualities: dict[str, Any]
) -> dict[str, Any]:
    """Merge the files the extract step did not read (subset null) and the decode nodes'
    quality records into the data-quality report."""
    skipped = [{"subset": None, **item} for item in extracted_images.get("skipped", [])]
    skipped += [{"subset": q["subset"], **item} for q in qualities for item in q["skipped"]]
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
            "%d files were left out; see data/08_reporting/data_quality.json.",
            len(skipped),
        )
    else:
        logger.info("All %d images decoded; no unreadable files.", report["decoded"])
    return report
