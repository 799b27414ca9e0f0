"""Folders for what the retrain nodes hand each other, so that every edge is a
file and any node can run in a process of its own (Dagster's multiprocess executor).

Each save writes a sibling folder and swaps it in (``atomic_folder``): a reader or a crash
never meets a half-written one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from .atomic import atomic_folder
from .image_set_dataset import ImageSetDataset

_SET_KEYS = ("images", "labels", "classes", "files")
_FIELDS = "fields.json"


class _FolderDataset(AbstractDataset):
    def __init__(self, filepath: str, metadata: dict | None = None):
        """Args: filepath: the folder; metadata: for kedro-viz, ignored by the dataset."""
        self._path = Path(filepath)
        self.metadata = metadata

    def _folder(self) -> Path:
        if not self._exists():
            raise DatasetError(f"Nothing saved at '{self._path}'; run the node that saves it.")
        return self._path

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}


class ImageSetBundleDataset(_FolderDataset):
    """An image set (``ImageSetDataset``'s layout, pixels memory-mapped) plus JSON fields in
    ``fields.json``; a field that is an image set itself (the pool) is a sub-folder."""

    def load(self) -> dict[str, Any]:
        return _read_bundle(self._folder())

    def save(self, data: dict[str, Any]) -> None:
        with atomic_folder(self._path) as tmp:
            _save_bundle(tmp, data, classes=data.get("classes", []))


def _read_bundle(folder: Path) -> dict[str, Any]:
    stored = json.loads((folder / _FIELDS).read_text())
    data = ImageSetDataset(str(folder), mmap=True).load()
    if not stored["has_classes"]:
        del data["classes"]
    return {**data, **stored["fields"], **{k: _read_bundle(folder / k) for k in stored["nested"]}}


def _is_image_set(value: Any) -> bool:
    return isinstance(value, dict) and "images" in value and "labels" in value


def _save_bundle(folder: Path, data: dict[str, Any], classes: list[str]) -> None:
    nested = [k for k, v in data.items() if k not in _SET_KEYS and _is_image_set(v)]
    image_set = {k: data[k] for k in _SET_KEYS if k in data}
    ImageSetDataset(str(folder)).save({"files": [], "classes": classes, **image_set})
    fields = {k: v for k, v in data.items() if k not in _SET_KEYS and k not in nested}
    stored = {"fields": fields, "nested": nested, "has_classes": "classes" in data}
    try:
        (folder / _FIELDS).write_text(json.dumps(stored))
    except TypeError as exc:
        raise DatasetError(f"Cannot save the fields of '{folder.name}' as JSON: {exc}") from exc
    for name in nested:
        _save_bundle(folder / name, data[name], classes)


class KerasModelsDataset(_FolderDataset):
    """Keras models by name, as ``<name>.keras`` files; an empty mapping is an empty folder."""

    def load(self) -> dict[str, Any]:
        from image_classifiers.models import load_model_file  # registers the custom layers

        return {p.stem: load_model_file(p) for p in sorted(self._folder().glob("*.keras"))}

    def save(self, data: dict[str, Any]) -> None:
        with atomic_folder(self._path) as tmp:
            for name, model in data.items():
                model.save(tmp / f"{name}.keras")
