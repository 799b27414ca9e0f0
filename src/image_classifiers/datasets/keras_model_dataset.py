"""A Keras 3 model saved in the native ``.keras`` format, whatever the backend."""

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from .atomic import atomic_file


class KerasModelDataset(AbstractDataset[Any, Any]):
    """Saves and loads a ``keras.Model`` as a single ``.keras`` file (``compile``: restore the
    optimizer and loss when loading)."""

    def __init__(self, filepath: str, compile: bool = True, metadata: dict | None = None):
        self._path = Path(filepath)
        self._compile = compile
        self.metadata = metadata

    def load(self) -> Any:
        from image_classifiers.core.models import load_model_file  # registers custom layers

        if not self._path.is_file():
            raise DatasetError(f"No model at '{self._path}'. Train one first (kedro run).")
        return load_model_file(self._path, compile=self._compile)

    def save(self, data: Any) -> None:
        try:
            with atomic_file(self._path) as tmp:
                data.save(tmp)
        except Exception as exc:
            raise DatasetError(f"Could not save model to '{self._path}': {exc}") from exc

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "compile": self._compile}
