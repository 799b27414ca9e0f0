"""Image files of a folder or a zip (zips inside it included), one at a time, as bytes:
nothing is extracted, so the Kaggle sample (zip -> ``train.zip`` -> ``*.jpg``) is read as is.
Links out of the folder, special files and members over the archive limits get a row saying
why they were not read (``core/data/inputs.py``).
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

from image_classifiers.core.data.extract import safe_member_path
from image_classifiers.core.data.inputs import ArchiveBudget, input_files, is_ignored, refused
from image_classifiers.core.images import UnreadableImageError, decode_image
from image_classifiers.core.params import IMAGE_EXTENSIONS, ArchiveLimits

logger = logging.getLogger(__name__)
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


def iter_image_files(
    source: str | Path, limits: ArchiveLimits | None = None, section: str = "predict"
) -> Iterator[ImageFile]:
    """Every image file of a folder (recursively) or of a ``.zip`` (nested zips opened), in
    name order; an unreadable one comes with ``data=None`` and its ``error``. Each archive is
    read within ``limits`` (``<section>.archive_limits`` in the messages)."""
    path = Path(source).expanduser()
    reader = _Reader(limits or ArchiveLimits(), section)
    if path.is_dir():
        yield from reader.folder(path)
    elif path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        try:
            with zipfile.ZipFile(path) as archive:
                yield from reader.zip(archive, "", ArchiveBudget(reader.limits), 0)
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


class _Reader:
    """Reads a folder's or an archive's image files within the archive limits."""

    def __init__(self, limits: ArchiveLimits, section: str):
        self.limits, self.section = limits, section

    def folder(self, folder: Path) -> Iterator[ImageFile]:
        files, skipped = input_files(folder, (*IMAGE_EXTENSIONS, ".zip"))
        rows = [(file.relative_to(folder).as_posix(), file) for file in files]
        rows += [(item["file"], item["reason"]) for item in skipped]
        for name, file in sorted(rows):
            if isinstance(file, str):  # why it is not read (the link itself is moved aside)
                yield ImageFile(name, None, file, folder / name)
            elif file.suffix.lower() == ".zip":
                yield from self.nested(file, name, ArchiveBudget(self.limits), 0, file)
            else:
                try:
                    yield ImageFile(name, file.read_bytes(), location=file)
                except OSError as exc:
                    yield ImageFile(name, None, f"cannot read the file ({exc.strerror})", file)

    def nested(
        self,
        file: Path | IO[bytes],
        name: str,
        budget: ArchiveBudget,
        depth: int,
        location: Path | None = None,
    ) -> Iterator[ImageFile]:
        try:
            inner = zipfile.ZipFile(file)
        except _ZIP_ERRORS as exc:
            yield ImageFile(name, None, f"the archive is truncated or corrupt ({exc})", location)
            return
        with inner:
            yield from self.zip(inner, f"{name}/", budget, depth)

    def zip(
        self, archive: zipfile.ZipFile, prefix: str, budget: ArchiveBudget, depth: int
    ) -> Iterator[ImageFile]:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            name = f"{prefix}{info.filename}"
            is_zip = info.filename.lower().endswith(".zip")
            if info.is_dir() or not (is_zip or is_image_name(PurePosixPath(name).name)):
                continue
            if safe_member_path(info.filename) is None:
                # Never read (a tool that extracts the archive would write outside its
                # folder), but reported: the caller promises one row per file.
                logger.warning("Skipped archive member '%s': %s.", name, UNSAFE_MEMBER)
                yield ImageFile(name, None, UNSAFE_MEMBER)
                continue
            if is_ignored(info.filename):
                continue
            if refusal := budget.refusal(info, depth + is_zip):
                yield ImageFile(name, None, refused(*refusal, self.section))
                if refusal[0] == "max_members":
                    return  # one row says it; the rest are not even listed
                continue
            try:
                if not is_zip:
                    yield ImageFile(name, archive.read(info))
                    continue
                # Spooled to a temp file, not read through the outer zip: a zip reader seeks
                # backwards, and seeking in a compressed member decompresses it again.
                with tempfile.TemporaryFile() as spool:
                    with archive.open(info) as member:
                        shutil.copyfileobj(member, spool, 1 << 20)
                    yield from self.nested(spool, name, budget, depth + 1)
            except _ZIP_ERRORS as exc:
                why = "the archive is truncated or corrupt" if is_zip else "cannot read it"
                yield ImageFile(name, None, f"{why} ({exc})")
