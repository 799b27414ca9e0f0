"""A folder of Keras models by name: what ``retrain``'s challenger nodes hand each other."""

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from .atomic import atomic_folder


class KerasModelsDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Keras models by name, as ``<name>.keras`` files. A save swaps in a whole new folder
    (``atomic_folder``): never half-written, and an empty save replaces the last run's models.
    """

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._path = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        from image_classifiers.core.models import load_model_file  # registers the custom layers

        if not self._path.is_dir():
            raise DatasetError(f"No models at '{self._path}'; run the node that saves them.")
        return {
            p.stem: load_model_file(p, compile=False) for p in sorted(self._path.glob("*.keras"))
        }

    def save(self, data: dict[str, Any]) -> None:
        with atomic_folder(self._path) as tmp:
            for name, model in data.items():
                model.save(tmp / f"{name}.keras")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}
