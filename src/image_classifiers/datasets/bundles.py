"""Files for the dicts the retrain and predict nodes hand to each other.

With every edge between nodes a file, any node can run in a process of its own (Dagster's
multiprocess executor, see docs/deployment.md) and a Kedro run can restart from a node.

``ImageSetBundleDataset`` (``retrain_images``): an image set (``ImageSetDataset``'s layout)
plus its other fields in ``fields.json``; a field that is itself an image set (the pool) is a
sub-folder of the same layout::

    images.npy  labels.npy  meta.json  fields.json  pool/{images.npy, ...}

``KerasModelBundleDataset`` (``retrain_challenger``): a dict with a Keras model (or ``None``)
under ``model`` and JSON values besides, as ``model.keras`` + ``fields.json``.
``LoadedClassifierDataset`` (``prediction_model``): a ``serving.LoadedClassifier`` the same
way. Every save writes a sibling folder and swaps it in (``atomic_folder``), so a reader or a
crash never meets a half-written bundle.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from .atomic import atomic_folder
from .image_set_dataset import ImageSetDataset

_SET_KEYS = ("images", "labels", "classes", "files")
_FIELDS = "fields.json"
_MODEL = "model.keras"


def _is_image_set(value: Any) -> bool:
    return isinstance(value, dict) and "images" in value and "labels" in value


class ImageSetBundleDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """An image set dict with extra JSON fields and nested image sets, as one folder."""

    def __init__(self, filepath: str, mmap: bool = True, metadata: dict | None = None):
        """Create the dataset.

        Args:
            filepath: The folder.
            mmap: Load the pixels memory-mapped (read-only), as ``ImageSetDataset`` does.
            metadata: Free-form metadata (used by kedro-viz), ignored by the dataset.
        """
        self._path = Path(filepath)
        self._mmap = mmap
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not (self._path / _FIELDS).is_file():
            raise DatasetError(
                f"No image set bundle at '{self._path}'; run the node that saves it."
            )
        return self._read(self._path)

    def _read(self, folder: Path) -> dict[str, Any]:
        stored = json.loads((folder / _FIELDS).read_text())
        data = ImageSetDataset(str(folder), mmap=self._mmap).load()
        if not stored["has_classes"]:
            del data["classes"]
        data.update(stored["fields"])
        for name in stored["nested"]:
            data[name] = self._read(folder / name)
        return data

    def save(self, data: dict[str, Any]) -> None:
        with atomic_folder(self._path) as tmp:
            _save_bundle(tmp, data, classes=data.get("classes", []))

    def _exists(self) -> bool:
        return (self._path / _FIELDS).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "mmap": self._mmap}


def _save_bundle(folder: Path, data: dict[str, Any], classes: list[str]) -> None:
    nested = [key for key, value in data.items() if key not in _SET_KEYS and _is_image_set(value)]
    image_set = {"files": [], "classes": classes, **{k: data[k] for k in _SET_KEYS if k in data}}
    ImageSetDataset(str(folder)).save(image_set)
    fields = {k: v for k, v in data.items() if k not in _SET_KEYS and k not in nested}
    stored = {"fields": fields, "nested": nested, "has_classes": "classes" in data}
    (folder / _FIELDS).write_text(_to_json(stored, folder))
    for name in nested:
        _save_bundle(folder / name, data[name], classes)


def _to_json(value: Any, where: Path) -> str:
    try:
        return json.dumps(value)
    except TypeError as exc:
        raise DatasetError(f"Cannot save the fields of '{where.name}' as JSON: {exc}") from exc


class KerasModelBundleDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """``{"model": keras.Model | None, ...JSON values}`` as ``model.keras`` + ``fields.json``."""

    def __init__(self, filepath: str, compile: bool = True, metadata: dict | None = None):
        """Create the dataset.

        Args:
            filepath: The folder.
            compile: Restore the optimizer and loss when loading the model.
            metadata: Free-form metadata (used by kedro-viz), ignored by the dataset.
        """
        self._path = Path(filepath)
        self._compile = compile
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not (self._path / _FIELDS).is_file():
            raise DatasetError(f"No model bundle at '{self._path}'; run the node that saves it.")
        # Registers the project's custom layers with Keras before deserialising.
        from image_classifiers.models import load_model_file

        data = json.loads((self._path / _FIELDS).read_text())
        model = self._path / _MODEL
        data["model"] = load_model_file(model, compile=self._compile) if model.is_file() else None
        return data

    def save(self, data: dict[str, Any]) -> None:
        fields = {k: v for k, v in data.items() if k != "model"}
        with atomic_folder(self._path) as tmp:
            (tmp / _FIELDS).write_text(_to_json(fields, self._path))
            if data.get("model") is not None:
                data["model"].save(tmp / _MODEL)

    def _exists(self) -> bool:
        return (self._path / _FIELDS).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "compile": self._compile}


class LoadedClassifierDataset(KerasModelBundleDataset):
    """A ``serving.LoadedClassifier`` (model, source, classes, threshold, details)."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        """Create the dataset (the model loads uncompiled: it only predicts)."""
        super().__init__(filepath, compile=False, metadata=metadata)

    def load(self) -> Any:
        from image_classifiers.serving import LoadedClassifier

        return LoadedClassifier(**super().load())

    def save(self, data: Any) -> None:
        fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
        super().save(fields)
