"""A decoded image set on disk: uint8 pixels, integer labels, class names and file names.

Layout of ``filepath`` (a folder)::

    images.npy   uint8, shape (N, height, width, 3)  -- loaded memory-mapped
    labels.npy   int32, shape (N,)
    meta.json    {"classes": [...], "files": [...]}

Memory-mapping means training reads the pixels without decoding a JPEG per epoch and
without holding every split in RAM at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

ImageSet = dict[str, Any]
_REQUIRED_KEYS = ("images", "labels", "classes", "files")


class ImageSetDataset(AbstractDataset[ImageSet, ImageSet]):
    """Saves and loads an image set dict ``{"images", "labels", "classes", "files"}``."""

    def __init__(self, filepath: str, mmap: bool = True, metadata: dict | None = None):
        """Create the dataset.

        Args:
            filepath: Folder that holds ``images.npy``, ``labels.npy`` and ``meta.json``.
            mmap: Load ``images.npy`` memory-mapped (read-only) instead of into RAM.
            metadata: Free-form metadata (used by kedro-viz), ignored by the dataset.
        """
        self._path = Path(filepath)
        self._mmap = mmap
        self.metadata = metadata

    def load(self) -> ImageSet:
        if not (self._path / "meta.json").is_file():
            raise DatasetError(
                f"No decoded image set at '{self._path}'. Run the data pipeline first: "
                "kedro run --pipeline=data_processing"
            )
        meta = json.loads((self._path / "meta.json").read_text())
        images = np.load(self._path / "images.npy", mmap_mode="r" if self._mmap else None)
        labels = np.load(self._path / "labels.npy")
        return {"images": images, "labels": labels, **meta}

    def save(self, data: ImageSet) -> None:
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise DatasetError(f"Image set is missing keys {missing}; expected {_REQUIRED_KEYS}.")
        images = np.asarray(data["images"])
        labels = np.asarray(data["labels"], dtype=np.int32)
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise DatasetError(
                f"Expected uint8 images (N, H, W, C) and N labels, got {images.dtype} "
                f"{images.shape} and {labels.shape}."
            )
        # Write into a sibling temp folder and swap it in, so a crash never leaves a
        # half-written set that a later run would load as if it were complete.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self._path.name}-", dir=self._path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published folder should not be
        try:
            np.save(tmp / "images.npy", images)
            np.save(tmp / "labels.npy", labels)
            meta = {"classes": list(data["classes"]), "files": [str(f) for f in data["files"]]}
            (tmp / "meta.json").write_text(json.dumps(meta))
            if self._path.exists():
                shutil.rmtree(self._path)
            os.replace(tmp, self._path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _exists(self) -> bool:
        return (self._path / "meta.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "mmap": self._mmap}
