"""File datasets whose saves are atomic: a reader sees the old file or the new one, never a part.

kedro-datasets' file datasets write into the target (versioned too), so a reader or a crash
can meet half a file: here a hidden sibling is renamed over it (``os.replace``); local only.
Temporary names carry the host and pid, so a later write removes what a killed run left."""

import glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from filelock import FileLock, Timeout
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.plotly import HTMLDataset
from kedro_datasets.text import TextDataset
from kedro_datasets.yaml import YAMLDataset

from image_classifiers.core.data.extract import owned_prefix, remove_orphans, remove_path


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
    remove_orphans(target.parent, prefix := f".{target.stem}.tmp-")
    tmp = target.with_name(f"{owned_prefix(prefix)}{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        yield tmp
        _replace(tmp, target)
    finally:
        remove_path(tmp)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A new empty folder to write ``target``'s next version into. ``target`` is a symbolic
    link to its current version (``.<name>.v-*``), switched by one rename on success, so a
    reader sees the old version or the new one, never neither (after a failure nothing has
    changed). One writer at a time: a second gets an error naming the first's pid."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = target.with_name(f".{target.name}.lock")
    try:  # the OS releases the lock of a killed process
        lock = FileLock(lock_file, timeout=0).acquire()
    except Timeout:
        raise DatasetError(
            f"Another process (pid {lock_file.read_text().strip() or '?'}) is writing "
            f"'{target}'; wait for it to end: two runs must not write the same data at once."
        ) from None
    with lock:
        lock_file.write_text(f"{os.getpid()}\n")
        previous = target.with_name(os.readlink(target)) if target.is_symlink() else None
        for orphan in target.parent.glob(f".{glob.escape(target.name)}.v-*"):
            if orphan != previous:  # versions of killed writers (we hold the lock)
                remove_path(orphan)
        tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{target.name}.v-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published folder should not be
        try:
            yield tmp
            if target.exists() and not target.is_symlink():  # a folder of the older layout
                remove_path(target)
            link = tmp.with_name(f"{tmp.name}.link")
            link.symlink_to(tmp.name)  # relative: the data folder may move
            os.replace(link, target)
            tmp = previous
        finally:
            if tmp is not None:
                remove_path(tmp)


def published_folder(folder: str | Path) -> Path:
    """The link an :func:`atomic_folder` version is published as (``data/x/.train.v-ab12`` ->
    ``data/x/train``): the name users know, which outlives the version; other folders as is."""
    folder = Path(folder)
    name, _, version = folder.name.rpartition(".v-")
    if folder.name.startswith(".") and name[1:] and version:
        return folder.with_name(name[1:])
    return folder


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


# kedro-datasets' datasets with atomic saves (same arguments):
class AtomicCSVDataset(_AtomicFile):
    wrapped = CSVDataset


class AtomicJSONDataset(_AtomicFile):
    wrapped = JSONDataset

    def save(self, data: Any) -> None:  # strict JSON: NaN (a class without test images) is null
        super().save(json.loads(json.dumps(data), parse_constant=lambda _: None))


class AtomicMatplotlibDataset(_AtomicFile):
    wrapped = MatplotlibDataset


class AtomicTextDataset(_AtomicFile):
    wrapped = TextDataset


class AtomicHTMLDataset(_AtomicFile):
    wrapped = HTMLDataset  # a plotly figure


class AtomicYAMLDataset(_AtomicFile):
    wrapped = YAMLDataset
