"""File datasets whose saves are atomic: a reader sees the old file or the new one, never a part.

kedro-datasets' ``pandas.CSVDataset``, ``json.JSONDataset`` and ``matplotlib.MatplotlibDataset``
write straight into the target file, so a run that reads it while another rewrites it (two
``kedro run`` at once, a dashboard polling ``predictions.csv``) can read half a file, and a
crash mid-write leaves one. ``AtomicSaveMixin`` makes the dataset write a hidden sibling
(``.<name>.<random>.tmp<suffix>``, same folder, so the same file system) and rename it over
the target (``os.replace``: atomic on POSIX). Local files only; other protocols save as the
parent does. Kedro's versioning would not help: a reader of the latest version can still see
it while it is being written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset


class AtomicSaveMixin:
    """Put before a kedro-datasets file dataset in the bases: its saves become atomic."""

    _atomic_save_path: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        # The parent's save() asks for the path to write: during a save, the temporary one.
        if self._atomic_save_path is not None:
            return self._atomic_save_path
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        if self._protocol != "file":  # type: ignore[attr-defined]
            super().save(data)  # type: ignore[misc]
            return
        target = Path(get_filepath_str(super()._get_save_path(), "file"))  # type: ignore[misc]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
        self._atomic_save_path = PurePosixPath(tmp.as_posix())
        try:
            super().save(data)  # type: ignore[misc]
            _replace(tmp, target)
        finally:
            self._atomic_save_path = None
            _remove(tmp)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A new empty sibling folder of ``target`` to write into; swapped in on success.

    A reader sees the old folder or the new one, never a part; after a failure ``target`` is
    as it was and the temporary folder is gone.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published folder should not be
    try:
        yield tmp
        if target.exists() and not target.is_dir():
            target.unlink()
        if target.exists():
            _replace(tmp, target)
        else:
            os.replace(tmp, target)
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


class AtomicCSVDataset(AtomicSaveMixin, CSVDataset):
    """``pandas.CSVDataset`` with atomic saves (same arguments)."""


class AtomicJSONDataset(AtomicSaveMixin, JSONDataset):
    """``json.JSONDataset`` with atomic saves (same arguments)."""


class AtomicMatplotlibDataset(AtomicSaveMixin, MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` with atomic saves (same arguments)."""
