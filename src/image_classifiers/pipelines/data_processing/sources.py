"""Dataset sources: which layout the data pipeline reads, chosen by the ``source`` parameters.

``source.type``:

- ``kaggle_names`` (xception_cats): a (nested) zip of ``<class>.<N>.jpg`` files.
- ``class_folders``: a folder or a (nested) zip with one folder per class at any depth.
- ``keras_datasets``: ``source.name`` one of mnist, fashion_mnist, cifar10, cifar100.

Each pipeline step is one node whatever the source; these functions pick the step's
implementation, so the pipeline (and ``kedro viz``) looks the same for every dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from image_classifiers.params import DownloadParams, ExtractParams, SourceParams, SplitParams

from .class_folders import DEFAULT_EXTENSIONS, split_class_folders
from .download import download_archive
from .extract import extract_images
from .keras_datasets import (
    CLASS_NAMES,
    check_dataset_name,
    dataset_members,
    extract_keras_dataset,
    fetch_keras_dataset,
)
from .split import (
    MANIFEST_COLUMNS,
    SplitError,
    assert_disjoint,
    assign_by_fractions,
    assign_by_positions,
    check_classes,
    log_counts,
    split_images,
    split_mode,
    split_seed,
)

logger = logging.getLogger(__name__)


class SourceError(ValueError):
    """The ``source`` parameters lack what the source needs; the message says what to do."""


def check_source(source: SourceParams | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``source`` parameters as a dict, validated (``SourceParams``; a dict is accepted)."""
    source = SourceParams.coerce(source).model_dump()
    if source["type"] == "keras_datasets":
        source["name"] = check_dataset_name(source["name"])
    return source


def download_data(download: DownloadParams, source: SourceParams) -> dict[str, Any]:
    """Make the raw data available locally and describe it (the ``download_archive`` node).

    Returns:
        kaggle_names / class_folders zips: the archive record of ``download_archive``;
        a class_folders folder: ``{"path", "sha256": None, "source": "local_path",
        "folder": True}``; keras_datasets: see ``keras_datasets.fetch_keras_dataset``.
    """
    source = check_source(source)
    download = DownloadParams.coerce(download)
    if source["type"] == "keras_datasets":
        return fetch_keras_dataset(download.model_dump(), source["name"])
    local = download.local_path
    if source["type"] == "class_folders" and not (local or download.url or download.gdrive_id):
        raise SourceError(
            "No class folders given: point download.local_path at a folder (or zip) holding "
            "one folder per class, e.g. kedro run --pipelines=image_folders "
            '--params="image_folders.download.local_path=/abs/path/PetImages.zip".'
        )
    if source["type"] == "class_folders" and local and Path(str(local)).expanduser().is_dir():
        folder = Path(str(local)).expanduser()
        logger.info("Using the class folders in %s in place.", folder)
        return {"path": str(folder), "sha256": None, "source": "local_path", "folder": True}
    return download_archive(download)


def extract_data(
    raw_archive: dict[str, Any], extract: ExtractParams, source: SourceParams
) -> dict[str, Any]:
    """Extract the images (or write the arrays) the split step reads (``extract_images``)."""
    source = check_source(source)
    extract = ExtractParams.coerce(extract).model_dump()
    if source["type"] == "keras_datasets":
        return extract_keras_dataset(raw_archive, extract)
    if source["type"] == "kaggle_names":
        return extract_images(raw_archive, extract)
    extensions = sorted({str(e).lower() for e in extract.get("extensions") or DEFAULT_EXTENSIONS})
    if raw_archive.get("folder"):
        return {"path": raw_archive["path"], "archive": None, "extensions": extensions}
    return extract_images(raw_archive, {**extract, "extensions": extensions, "nested_zips": True})


def split_data(
    extracted_images: dict[str, Any], split: SplitParams, source: SourceParams
) -> tuple[pd.DataFrame, list[str]]:
    """Assign every image to one subset (the ``split_images`` node).

    Returns:
        The manifest (``file``, ``class``, ``subset``) and the class names in label order.
    """
    source = check_source(source)
    # The split functions check what depends on the source (subset names, class counts).
    split = SplitParams.coerce(split).model_dump()
    if source["type"] == "keras_datasets":
        return split_keras_dataset(extracted_images, split)
    if source["type"] == "class_folders":
        return split_class_folders(extracted_images, split)
    return split_images(extracted_images, split), check_classes(split["classes"])


def split_keras_dataset(
    extracted: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, list[str]]:
    """The dataset's own test set is the test split; train and validation come from its
    training set, by per-class position ranges or stratified fractions.

    ``split.classes``: null for the dataset's names, or a list renaming them (same length).
    """
    mode, bounds = split_mode(split, subsets=("train", "validation"))
    names = list(extracted.get("classes") or CLASS_NAMES[extracted["dataset"]])
    wanted = split.get("classes")
    if wanted is not None:
        renamed = check_classes(wanted)
        if len(renamed) != len(names):
            raise SplitError(
                f"split.classes renames the {len(names)} classes of {extracted['dataset']} "
                f"({names[:10]}...), so it needs {len(names)} names, got {len(renamed)}. Or "
                "set split.classes=null to keep the dataset's names."
            )
        names = renamed
    members = dataset_members(extracted)
    train = {names[label]: refs for label, refs in sorted(members["train"].items())}
    if mode == "fractions":
        plan = assign_by_fractions(train, bounds, split_seed(split))
    else:
        plan = assign_by_positions(train, bounds, "training images")
    plan += [
        ("test", names[label], ref)
        for label, refs in sorted(members["test"].items())
        for ref in refs
    ]
    assert_disjoint(plan)
    manifest = pd.DataFrame([(ref, c, s) for s, c, ref in plan], columns=MANIFEST_COLUMNS)
    log_counts(manifest, f"Split {extracted['dataset']} ({len(manifest)} images)")
    return manifest, names
