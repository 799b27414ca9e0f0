"""Node functions of the data_processing pipeline: download -> extract -> split -> decode.

Each step is one node whatever the ``source`` (``kaggle_names``: a nested zip of
``<class>.<N>.jpg``; ``class_folders``: a folder or nested zip of one folder per class;
``keras_datasets``: MNIST, Fashion-MNIST, CIFAR-10/100), so the pipeline (and ``kedro viz``)
looks the same for every dataset; these functions pick the step's implementation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from image_classifiers.params import DownloadParams, ExtractParams, SourceParams, SplitParams

from .decode import DecodeError, decode_split, make_split_decoder, report_data_quality
from .download import ArchiveDownloadError, InvalidArchiveError, download_archive, verify_archive
from .extract import ArchiveExtractError, extract_images
from .keras_datasets import (
    KerasDatasetError,
    extract_keras_dataset,
    fetch_keras_dataset,
    split_keras_dataset,
)
from .split import SplitError, split_class_folders, split_kaggle_names

logger = logging.getLogger(__name__)

__all__ = [
    "ArchiveDownloadError",
    "ArchiveExtractError",
    "DecodeError",
    "InvalidArchiveError",
    "KerasDatasetError",
    "SourceError",
    "SplitError",
    "decode_split",
    "download_archive",
    "download_data",
    "extract_data",
    "extract_images",
    "make_split_decoder",
    "report_data_quality",
    "split_data",
    "verify_archive",
]


class SourceError(ValueError):
    """The ``source`` parameters lack what the source needs; the message says what to do."""


def download_data(download: DownloadParams, source: SourceParams) -> dict[str, Any]:
    """Make the raw data available locally and describe it.

    Returns:
        The record of ``download_archive`` (a zip); for a folder of class folders
        ``{"path", "sha256": None, "source": "local_path", "folder": True}``; for a Keras
        dataset the record of ``fetch_keras_dataset``.
    """
    if source.type == "keras_datasets":
        return fetch_keras_dataset(download, source.name)
    if source.type == "class_folders":
        if not (download.local_path or download.url or download.gdrive_id):
            raise SourceError(
                "No class folders given: point download.local_path at a folder (or zip) "
                "holding one folder per class, e.g. kedro run --pipelines=image_folders "
                '--params="image_folders.download.local_path=/abs/path/PetImages.zip".'
            )
        folder = Path(download.local_path or "").expanduser()
        if download.local_path and folder.is_dir():
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
        return {"path": raw_archive["path"], "archive": None, "extensions": extensions}
    return extract_images(raw_archive, extract)


def split_data(
    extracted_images: dict[str, Any], split: SplitParams, source: SourceParams
) -> tuple[pd.DataFrame, list[str]]:
    """Assign every image to one subset.

    Returns:
        The manifest (``file``, ``class``, ``subset``) and the class names in label order.
    """
    splitter = {
        "kaggle_names": split_kaggle_names,
        "class_folders": split_class_folders,
        "keras_datasets": split_keras_dataset,
    }[source.type]
    return splitter(extracted_images, split)
