"""Image files of a folder or a zip (zips inside it included), one at a time, as bytes:
nothing is extracted, so the Kaggle sample (zip -> ``train.zip`` -> ``*.jpg``) is read as is.
"""

import logging
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from image_classifiers.core.data.extract import is_ignored, safe_member_path
from image_classifiers.core.images import UnreadableImageError, decode_image

logger = logging.getLogger(__name__)

#: File suffixes read as images (anything else in a folder or archive is skipped).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Why a zip member with an absolute path or ``..`` in it (zip-slip) is not read.
UNSAFE_MEMBER = "unsafe path in the archive (absolute, or with '..'): not read"
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


class ImageSourceError(ValueError):
    """The folder or archive to read images from is missing or unreadable as a whole."""


@dataclass(frozen=True)
class ImageFile:
    """An image file's name in the source, its bytes or why they are missing, and its path
    on disk (``location``, what retraining moves aside; ``None`` inside an archive)."""

    name: str
    data: bytes | None
    error: str | None = None
    location: Path | None = None

    @property
    def parent(self) -> str:
        """Name of the folder the file is in (``cat`` for ``new/cat/x.jpg``)."""
        parent = PurePosixPath(self.name).parent.name
        # A member of a nested zip at its root: the zip's own name is no folder.
        return "" if parent.endswith(".zip") else parent

    def decoded(self, image_size: tuple[int, int]) -> np.ndarray | str:
        """The decoded image, or the reason it could not be decoded."""
        if self.data is None:
            return self.error or "unreadable"
        try:
            return decode_image(self.data, image_size)
        except UnreadableImageError as exc:
            return exc.reason


def is_image_name(name: str) -> bool:
    """Whether ``name`` looks like an image file that is not macOS or dot-file clutter."""
    return not is_ignored(name) and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def iter_image_files(source: str | Path) -> Iterator[ImageFile]:
    """Every image file of a folder (recursively) or of a ``.zip`` (nested zips opened), in
    name order; an unreadable one comes with ``data=None`` and its ``error``."""
    path = Path(source).expanduser()
    if path.is_dir():
        yield from _iter_folder(path)
    elif path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        try:
            with zipfile.ZipFile(path) as archive:
                yield from _iter_zip(archive, prefix="")
        except _ZIP_ERRORS as exc:
            raise ImageSourceError(
                f"Cannot read the archive '{path}' ({exc}); it is truncated or corrupt. "
                "Copy it again, or unpack it and give the folder instead."
            ) from exc
    elif path.exists():
        raise ImageSourceError(
            f"'{path}' is neither a folder nor a zip archive. Give a folder of images or a "
            ".zip of them."
        )
    else:
        raise ImageSourceError(
            f"No folder or archive of images at '{path}'. Check the path (relative paths "
            "start at the project root)."
        )


def _iter_folder(folder: Path) -> Iterator[ImageFile]:
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = file.relative_to(folder).as_posix()
        if file.suffix.lower() == ".zip":
            yield from _iter_nested_zip(file, name, file)
        elif is_image_name(name):
            try:
                yield ImageFile(name, file.read_bytes(), location=file)
            except OSError as exc:
                yield ImageFile(name, None, f"cannot read the file ({exc.strerror})", file)


def _iter_nested_zip(
    file: Path | IO[bytes], name: str, location: Path | None = None
) -> Iterator[ImageFile]:
    try:
        inner = zipfile.ZipFile(file)
    except _ZIP_ERRORS as exc:
        yield ImageFile(name, None, f"the archive is truncated or corrupt ({exc})", location)
        return
    with inner:
        yield from _iter_zip(inner, prefix=f"{name}/")


def _iter_zip(archive: zipfile.ZipFile, prefix: str) -> Iterator[ImageFile]:
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        name = f"{prefix}{info.filename}"
        if info.is_dir():
            continue
        if safe_member_path(info.filename) is None:
            # Never read (a tool that extracts the archive would write outside its folder),
            # but reported: the caller promises one row per file.
            if is_image_name(PurePosixPath(info.filename).name):
                logger.warning("Skipped archive member '%s': %s.", name, UNSAFE_MEMBER)
                yield ImageFile(name, None, UNSAFE_MEMBER)
            continue
        if is_ignored(info.filename):
            continue
        if info.filename.lower().endswith(".zip"):
            # Spooled to a temp file, not read through the outer zip: a zip reader seeks
            # backwards, and seeking in a compressed member decompresses it again from the start.
            with tempfile.TemporaryFile() as spool:
                try:
                    with archive.open(info) as member:
                        shutil.copyfileobj(member, spool, 1 << 20)
                except _ZIP_ERRORS as exc:
                    yield ImageFile(name, None, f"the archive is truncated or corrupt ({exc})")
                    continue
                yield from _iter_nested_zip(spool, name)
        elif is_image_name(info.filename):
            try:
                yield ImageFile(name, archive.read(info))
            except _ZIP_ERRORS as exc:
                yield ImageFile(name, None, f"cannot read it from the archive ({exc})")
