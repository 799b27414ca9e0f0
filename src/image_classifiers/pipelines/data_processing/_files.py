"""File-system helpers that keep every output either complete or absent."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (archives can be ~1 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh temp folder beside ``target`` (same file system, so a rename is atomic).

    Whatever is left in it when the block ends -- because of an error or because the
    caller did not publish it -- is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 mode would end up on the published folder.
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(staged: Path, target: Path) -> None:
    """Replace folder ``target`` by ``staged`` with renames, never by copying into it.

    The old folder is moved aside first and deleted only once the new one is in place,
    so readers see either the old complete folder or the new complete one.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
