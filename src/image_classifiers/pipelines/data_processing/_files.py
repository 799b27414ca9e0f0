"""Outputs that are either complete or absent."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` that replaces it, by renames, if the block succeeds.

    Readers see the old complete folder or the new complete one; on an error the old one
    stays and the new one is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp, old = (
        target.with_name(f".{target.name}.tmp-{tag}"),
        target.with_name(f".{target.name}.old-{tag}"),
    )
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would end up on the published folder
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
