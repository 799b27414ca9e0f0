"""Generated fixture archives with the real dogs-vs-cats nesting (importable by tests).

A plain module rather than conftest.py so that `from fixture_archives import write_archive`
cannot pick up another folder's conftest.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> bytes:
    """A small JPEG whose pixels depend on ``seed`` (a class-dependent tint helps learning)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def write_archive(
    path: Path,
    indices: Iterable[int] = range(16),
    classes: Iterable[str] = ("cat", "dog"),
    extra_members: dict[str, bytes] | None = None,
    image_size: tuple[int, int] = (40, 32),
) -> Path:
    """Write ``path`` as ``dogs-vs-cats.zip`` is nested: outer zip -> train.zip -> train/*.jpg.

    Cats are darker than dogs so that a tiny model can learn something.
    """
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as train_zip:
        for c, name in enumerate(classes):
            for n in indices:
                rng = np.random.default_rng(1000 * c + n)
                base = 60 if c == 0 else 190
                pixels = np.clip(
                    rng.normal(base, 30, (image_size[1], image_size[0], 3)), 0, 255
                ).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG")
                train_zip.writestr(f"train/{name}.{n}.jpg", buffer.getvalue())
        for member, data in (extra_members or {}).items():
            train_zip.writestr(member, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as outer:
        outer.writestr("train.zip", inner.getvalue())
    return path
