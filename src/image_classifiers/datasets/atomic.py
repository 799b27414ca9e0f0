"""File datasets whose saves are atomic: a reader sees the old file or the new one, never a part.

kedro-datasets' file datasets write into the target (versioned too), so a reader or a crash
can meet half a file: here a hidden sibling is renamed over it (``os.replace``); local only."""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset


class _AtomicFile(AbstractDataset[Any, Any]):
    """A kedro-datasets file dataset (``wrapped``, same arguments) whose saves are atomic:
    it writes a temporary sibling, then renames it over ``filepath``."""

    wrapped: type[AbstractDataset]

    def __init__(self, *, filepath: str, metadata: dict | None = None, **kwargs: Any):
        self._filepath = PurePosixPath(filepath)  # also where MlflowArtifactDataset looks
        self._kwargs = kwargs
        self.metadata = metadata

    def _at(self, path: Any) -> AbstractDataset:
        return self.wrapped(filepath=str(path), **self._kwargs)

    def load(self) -> Any:
        return self._at(self._filepath).load()

    def save(self, data: Any) -> None:
        if "://" in str(self._filepath):  # not a local file: no rename to make it atomic
            self._at(self._filepath).save(data)
            return
        with atomic_file(self._filepath) as tmp:
            self._at(tmp).save(data)

    def _exists(self) -> bool:
        return self._at(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), **self._kwargs}


@contextmanager
def atomic_file(target: str | PurePath) -> Iterator[Path]:
    """A hidden sibling path of ``target`` (same suffix: Keras insists on ``.keras``) to write
    into; renamed over ``target`` on success, deleted on failure."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        _replace(tmp, target)
    finally:
        _remove(tmp)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A new empty sibling folder of ``target`` to write into; swapped in on success (after a
    failure ``target`` is as it was and the temporary folder is gone)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published folder should not be
    try:
        yield tmp
        if target.exists() and not target.is_dir():
            target.unlink()
        _replace(tmp, target)
    finally:
        _remove(tmp)


def _replace(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target``; a folder (a list of figures) replaces a folder."""
    if not (source.is_dir() and target.is_dir()):
        os.replace(source, target)
        return
    # os.replace cannot replace a non-empty folder: swap it aside first (two renames).
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


# kedro-datasets' datasets with atomic saves (same arguments):
class AtomicCSVDataset(_AtomicFile):
    wrapped = CSVDataset


class AtomicJSONDataset(_AtomicFile):
    wrapped = JSONDataset


class AtomicMatplotlibDataset(_AtomicFile):
    wrapped = MatplotlibDataset


class AtomicTextDataset(_AtomicFile):
    wrapped = TextDataset
