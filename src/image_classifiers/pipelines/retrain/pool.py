"""The training pool: every labeled image retraining has added, with a manifest of hashes.

The pool holds only what came in through ``data/01_raw/incoming`` -- the data pipeline's
``train_set`` stays as it is, and a challenger trains on both. Each image is listed with the
SHA-256 of its file and the retraining run that added it, which is how a rerun recognises
images it already has (and never adds them twice).

Layout of ``filepath``::

    CURRENT                 the name of the current snapshot folder (one line)
    <snapshot>/images.npy   uint8 (N, H, W, 3), as ImageSetDataset writes it
    <snapshot>/labels.npy
    <snapshot>/meta.json    classes, files
    <snapshot>/manifest.json  sha256 and run of every image

A save writes a new snapshot folder and then replaces ``CURRENT`` (an atomic rename), so a
crash at any point leaves the previous pool whole; the snapshot before the current one is
kept as well (the one a crash-free save replaced), older ones are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from image_classifiers.datasets import ImageSetDataset

POINTER = "CURRENT"
MANIFEST = "manifest.json"


def empty_pool() -> dict[str, Any]:
    """A pool with no images yet (its image size is not known until the first is added)."""
    return {
        "images": np.zeros((0, 0, 0, 3), dtype=np.uint8),
        "labels": np.zeros(0, dtype=np.int32),
        "classes": [],
        "files": [],
        "sha256": [],
        "runs": [],
    }


class TrainingPoolDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Loads and saves the training pool (see the module docstring); absent means empty."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        """Create the dataset.

        Args:
            filepath: Folder of the pool.
            metadata: Free-form metadata (used by kedro-viz), ignored by the dataset.
        """
        self._path = Path(filepath)
        self.metadata = metadata

    def _current(self) -> Path | None:
        try:
            name = (self._path / POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        snapshot = self._path / name
        if not (snapshot / MANIFEST).is_file():
            raise DatasetError(
                f"The training pool at '{self._path}' points to '{name}', which is missing or "
                "incomplete. Restore the folder from a backup, or delete the pool to start "
                "again from train_set only."
            )
        return snapshot

    def load(self) -> dict[str, Any]:
        snapshot = self._current()
        if snapshot is None:
            return empty_pool()
        image_set = ImageSetDataset(str(snapshot)).load()
        manifest = json.loads((snapshot / MANIFEST).read_text())
        return {**image_set, "sha256": manifest["sha256"], "runs": manifest["runs"]}

    def save(self, data: dict[str, Any]) -> None:
        count = len(data["files"])
        if not (len(data["sha256"]) == len(data["runs"]) == len(data["labels"]) == count):
            raise DatasetError(
                "A training pool needs one file name, label, sha256 and run per image; got "
                f"{count} files, {len(data['labels'])} labels, {len(data['sha256'])} hashes "
                f"and {len(data['runs'])} runs."
            )
        current = self._current()
        unchanged = _same_manifest(current, data) if current is not None else count == 0
        if unchanged:
            return  # nothing was added: keep the snapshot rather than rewrite it
        self._path.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        snapshot = self._path / name
        # ImageSetDataset writes to a temp folder and renames it into place.
        ImageSetDataset(str(snapshot)).save(data)
        manifest = {"sha256": list(data["sha256"]), "runs": list(data["runs"])}
        (snapshot / MANIFEST).write_text(json.dumps(manifest))
        _replace_text(self._path / POINTER, name)
        self._delete_old_snapshots(keep={name, current.name if current else name})

    def _delete_old_snapshots(self, keep: set[str]) -> None:
        for folder in self._path.iterdir():
            # Dot-folders are ImageSetDataset's temp folders: its own to clean up.
            if folder.is_dir() and not folder.name.startswith(".") and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _exists(self) -> bool:
        return (self._path / POINTER).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}


def _same_manifest(snapshot: Path, data: dict[str, Any]) -> bool:
    manifest = json.loads((snapshot / MANIFEST).read_text())
    return manifest["sha256"] == list(data["sha256"]) and manifest["runs"] == list(data["runs"])


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` so that readers see the old content or the new, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
