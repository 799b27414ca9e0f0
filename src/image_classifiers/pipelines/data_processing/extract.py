"""Extract the images of the nested archive (outer zip -> ``train.zip`` -> ``train/*.jpg``).

Only image files of the inner archive are written (the real archive also holds
``test1.zip``, unlabelled, and a CSV), macOS metadata (``__MACOSX/``, ``._*``) and other
dot-files are skipped, and an entry whose path would land outside the target folder
(zip-slip: ``../x``, ``/etc/x``) makes the whole extraction fail before anything is written.
Files go to a temp folder that replaces the target only when everything is out, together
with a stamp that lets the next run skip the work.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from image_classifiers.params import ExtractParams

from ._files import publish_dir, staging_dir

logger = logging.getLogger(__name__)

STAMP_FILE = ".extracted.json"
_MAX_NESTING = 3
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, zipfile.LargeZipFile)


class ArchiveExtractError(RuntimeError):
    """The archive is corrupt, unsafe or lacks what is needed; the message says what to do."""


def extract_images(raw_archive: dict[str, Any], extract: ExtractParams) -> dict[str, Any]:
    """Extract the image files of the (nested) archive into ``extract.target_dir``.

    Args:
        raw_archive: The record of the download node (``path``, ``sha256``, ``source``).
        extract: The ``extract`` parameters (``ExtractParams``; a dict is validated):
            ``target_dir``; ``inner_archive`` (the member that holds the images, e.g.
            ``train.zip``, or null when the images are in the outer archive itself);
            ``extensions`` (image file name endings to keep); ``nested_zips`` (also unpack
            zips inside it, in place, and keep empty folders; the class_folders source).

    Returns:
        ``{"path", "archive", "archive_sha256", "inner_archive", "files"}``.

    Raises:
        ArchiveExtractError: Corrupt/truncated archive, zip-slip entry, missing inner archive.
    """
    extract = ExtractParams.coerce(extract)
    archive = Path(raw_archive["path"])
    target = Path(extract.target_dir)
    inner_name = extract.inner_archive or None
    extensions = sorted({e.lower() for e in extract.extensions})
    nested = extract.nested_zips
    stamp = {
        "archive_sha256": raw_archive.get("sha256"),
        "inner_archive": inner_name,
        "extensions": extensions,
    }
    if nested:  # only then, so that earlier extractions' stamps still match
        stamp["nested_zips"] = True
    record = {"path": str(target), "archive": str(archive), **stamp}

    files = _already_extracted(target, stamp)
    if files is not None:
        logger.info("%s already holds the %d images of %s; not extracting.", target, files, archive)
        return {**record, "files": files}

    hint = _hint(raw_archive)
    start = time.perf_counter()
    with staging_dir(target) as tmp:
        with _open_image_zip(archive, inner_name, tmp, hint) as (images_zip, label):
            files = _extract_members(images_zip, label, tmp, tuple(extensions), hint, nested=nested)
        if files == 0:
            raise ArchiveExtractError(
                f"{label} holds no image files ending in {extensions}. Check "
                "extract.inner_archive and extract.extensions."
            )
        (tmp / STAMP_FILE).write_text(json.dumps({**stamp, "files": files}))
        publish_dir(tmp, target)
    logger.info(
        "Extracted %d images from %s to %s in %.1f s.",
        files,
        archive,
        target,
        time.perf_counter() - start,
    )
    return {**record, "files": files}


def is_ignored(name: str) -> bool:
    """macOS resource forks (``__MACOSX/``, ``._x``), other dot-files and folders."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.endswith("/") or any(p == "__MACOSX" or p.startswith(".") for p in parts)


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path an entry may be extracted to, or None if it would escape (zip-slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def _already_extracted(target: Path, stamp: dict[str, Any]) -> int | None:
    """The number of files if ``target`` is a complete extraction of the same archive."""
    try:
        saved = json.loads((target / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if {k: saved.get(k) for k in stamp} != stamp or stamp["archive_sha256"] is None:
        return None
    on_disk = sum(1 for p in target.rglob("*") if p.is_file() and not is_ignored(p.name))
    return on_disk if on_disk == saved.get("files") else None


@contextmanager
def _open_image_zip(
    archive: Path, inner_name: str | None, tmp: Path, hint: str
) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """Open the zip that holds the images: the inner archive, or the outer one itself."""
    try:
        with zipfile.ZipFile(archive) as outer:
            if inner_name is None:
                yield outer, f"'{archive}'"
                return
            if inner_name not in outer.NameToInfo:
                raise ArchiveExtractError(
                    f"'{archive}' has no member '{inner_name}' (it holds "
                    f"{sorted(outer.namelist())[:10]}). Set extract.inner_archive to the "
                    "member that holds the images, or null if they are in the archive itself."
                )
            # Copied to a file rather than read through the outer zip: a zip reader seeks
            # backwards, which re-decompresses a compressed member from its start each time.
            inner_path = tmp / f".{Path(inner_name).name}"
            with outer.open(inner_name) as src, open(inner_path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except _CORRUPT as exc:
        raise ArchiveExtractError(_corrupt_message(f"'{archive}'", exc, hint)) from exc
    label = f"'{inner_name}' inside '{archive}'"
    try:
        inner = zipfile.ZipFile(inner_path)
    except _CORRUPT as exc:
        raise ArchiveExtractError(_corrupt_message(label, exc, hint)) from exc
    try:
        with inner:
            yield inner, label
    finally:
        inner_path.unlink(missing_ok=True)


def _extract_members(
    images_zip: zipfile.ZipFile,
    label: str,
    tmp: Path,
    extensions: tuple[str, ...],
    hint: str,
    *,
    nested: bool = False,
    into: Path | None = None,
    depth: int = 0,
) -> int:
    """Write the image members of ``images_zip`` under ``into`` (default ``tmp``).

    With ``nested``, folders are created even when empty (an empty class folder must be
    seen to be reported) and a member zip is unpacked in place, beside its own entry, as
    unzipping it by hand would.
    """
    into = into or tmp
    members, folders, inner_zips = _sort_members(images_zip, label, extensions, nested)
    for relative in folders:
        into.joinpath(*relative.parts).mkdir(parents=True, exist_ok=True)
    made: set[Path] = set()
    try:
        for info, relative in members:
            destination = into.joinpath(*relative.parts)
            if destination.parent not in made:
                destination.parent.mkdir(parents=True, exist_ok=True)
                made.add(destination.parent)
            with images_zip.open(info) as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)
        count = len(members)
        for info, relative in inner_zips:
            if depth >= _MAX_NESTING:
                raise ArchiveExtractError(
                    f"{label} nests zips more than {_MAX_NESTING} deep ('{info.filename}'). "
                    "Unpack the archive by hand and point download.local_path at the folder."
                )
            # Copied to a file first, for the reason given in _open_image_zip.
            copy = tmp / f".nested-{depth}-{uuid.uuid4().hex[:8]}.zip"
            with images_zip.open(info) as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            inner_label = f"'{info.filename}' inside {label}"
            try:
                with zipfile.ZipFile(copy) as inner:
                    count += _extract_members(
                        inner,
                        inner_label,
                        tmp,
                        extensions,
                        hint,
                        nested=True,
                        into=into.joinpath(*relative.parent.parts),
                        depth=depth + 1,
                    )
            finally:
                copy.unlink(missing_ok=True)
    except _CORRUPT as exc:
        raise ArchiveExtractError(_corrupt_message(label, exc, hint)) from exc
    return count


def _sort_members(
    images_zip: zipfile.ZipFile, label: str, extensions: tuple[str, ...], nested: bool
) -> tuple[list, list[PurePosixPath], list]:
    """The image members, the folders (``nested`` only) and the member zips (``nested``)."""
    members, folders, inner_zips = [], [], []
    for info in images_zip.infolist():
        # Checked before the dot-file filter, which would otherwise take ".." for a dot-file.
        relative = safe_member_path(info.filename)
        if relative is None:
            raise ArchiveExtractError(
                f"{label} contains the entry '{info.filename}', whose path leads outside the "
                "extraction folder (zip-slip). Nothing was extracted. The archive is damaged "
                "or malicious: get it again from a source you trust."
            )
        if nested and info.is_dir() and not is_ignored(info.filename.rstrip("/")):
            folders.append(relative)
        elif is_ignored(info.filename):
            continue
        elif nested and relative.suffix.lower() == ".zip":
            inner_zips.append((info, relative))
        elif relative.suffix.lower() in extensions:
            members.append((info, relative))
    return members, folders, inner_zips


def _corrupt_message(label: str, exc: Exception, hint: str) -> str:
    return f"{label} is truncated or corrupt ({exc}). {hint}"


def _hint(raw_archive: dict[str, Any]) -> str:
    if raw_archive.get("source") == "local_path":
        return (
            "Download the archive again and point download.local_path at the new copy "
            "(nothing was extracted)."
        )
    return (
        f"Delete '{raw_archive['path']}' and run the pipeline again to download it anew "
        "(nothing was extracted)."
    )
