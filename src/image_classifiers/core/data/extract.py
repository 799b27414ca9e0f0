"""Extract the images of a (nested) zip: outer zip -> ``train.zip`` -> ``train/*.jpg``.

Only image files are written; dot-files and macOS metadata are skipped; zips inside are
unpacked in place, within ``extract.archive_limits`` (a member too large is skipped and
reported, any other limit fails the extraction); an entry whose path would leave the target
(zip-slip) fails the whole extraction. The target is replaced only when everything is out,
with a stamp that lets the next run skip the work.
"""

import glob
import json
import logging
import os
import re
import shutil
import socket
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import psutil

from image_classifiers.core.params import ExtractParams

from .inputs import ArchiveBudget, is_ignored, refused

logger = logging.getLogger(__name__)

STAMP_FILE = ".extracted.json"
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, zipfile.LargeZipFile)
HOST = socket.gethostname()  # in temporary names, with the pid: a later run removes orphans


def owned_prefix(prefix: str) -> str:
    """``prefix`` with this host and process: ``remove_orphans(prefix)`` tells them apart."""
    return f"{prefix}{HOST}-{os.getpid()}-"


def process_gone(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` of this host has ended (or, since ``since``, its pid reused)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return True
    return since is not None and started > since + 1


def remove_orphans(directory: str | Path, prefix: str) -> None:
    """Delete the ``owned_prefix(prefix)`` entries of ended processes (``kill -9``) of this host."""
    owner = re.compile(re.escape(f"{prefix}{HOST}-") + r"(\d+)-")
    for path in Path(directory).glob(glob.escape(prefix) + "*"):
        if (match := owner.match(path.name)) and process_gone(int(match[1])):
            logger.info("Removing %s, left by a killed run (pid %s).", path, match[1])
            remove_path(path)


def remove_path(path: Path) -> None:
    """Delete a file, a link or a folder, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ArchiveExtractError(RuntimeError):
    """The archive is corrupt, unsafe or lacks what is needed; the message says what to do."""


def extract_images(raw_archive: dict[str, Any], extract: ExtractParams) -> dict[str, Any]:
    """Extract the image files of the archive (or of its ``extract.inner_archive`` member)
    into ``extract.target_dir``."""
    archive, target = Path(raw_archive["path"]), Path(extract.target_dir)
    inner = extract.inner_archive
    stamp = {
        "archive_sha256": raw_archive.get("sha256"),
        "inner_archive": inner,
        "extensions": sorted({e.lower() for e in extract.extensions}),
    }
    record = {"path": str(target), "archive": str(archive), **stamp}
    done = _already_extracted(target, stamp)
    if done is not None:
        logger.info(
            "%s already holds the %d images of %s; not extracting.", target, done[0], archive
        )
        return {**record, "files": done[0], "skipped": done[1]}

    if raw_archive.get("source") == "local_path":
        hint = "Download the archive again and point download.local_path at the new copy"
    else:
        hint = f"Delete '{archive}' and run the pipeline again to download it anew"
    label = f"'{archive}'"
    with atomic_dir(target) as tmp:
        budget = ArchiveBudget(extract.archive_limits)
        hint = f"{hint} (nothing was extracted)."
        unpack = _Unpacker(tmp, tuple(stamp["extensions"]), hint, budget)
        try:
            with zipfile.ZipFile(archive) as outer:
                if inner is None:
                    files = unpack.members(outer, label, tmp, 0)
                elif inner not in outer.NameToInfo:
                    raise ArchiveExtractError(
                        f"'{archive}' has no member '{inner}' (it holds "
                        f"{sorted(outer.namelist())[:10]}). Set extract.inner_archive to the "
                        "member that holds the images, or null if they are in the archive itself."
                    )
                elif unpack.admitted(member := outer.getinfo(inner), label, 1):
                    files = unpack.zip_member(outer, member, label, tmp, 1)
                else:
                    raise ArchiveExtractError(
                        f"{label}: '{inner}' is {unpack.skipped[0]['reason']}. Nothing was "
                        "extracted; raise the limit if you trust the archive."
                    )
        except _CORRUPT as exc:
            raise ArchiveExtractError(
                f"{label} is truncated or corrupt ({exc}). {unpack.hint}"
            ) from exc
        if files == 0:
            raise ArchiveExtractError(
                f"{label} holds no image files ending in {stamp['extensions']}. Check "
                "extract.inner_archive and extract.extensions."
            )
        done = {"files": files, "skipped": unpack.skipped}
        (tmp / STAMP_FILE).write_text(json.dumps({**stamp, **done}))
    logger.info("Extracted %d images from %s to %s.", files, archive, target)
    return {**record, **done}


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path an entry may be extracted to, or None if it would escape (zip-slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` that replaces it, by renames, if the block succeeds:
    readers see the old complete folder or the new one; on an error the old one stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old"):  # what a killed run left
        remove_orphans(target.parent, f".{target.name}.{kind}-")
    tag = uuid.uuid4().hex[:8]
    tmp = target.with_name(f"{owned_prefix(f'.{target.name}.tmp-')}{tag}")
    old = target.with_name(f"{owned_prefix(f'.{target.name}.old-')}{tag}")
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would end up on the published folder
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _already_extracted(target: Path, stamp: dict[str, Any]) -> tuple[int, list] | None:
    """The number of files and the skipped members if ``target`` is a complete extraction of
    the same archive."""
    try:
        saved = json.loads((target / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if stamp["archive_sha256"] is None or {k: saved.get(k) for k in stamp} != stamp:
        return None
    on_disk = sum(1 for p in target.rglob("*") if p.is_file() and not is_ignored(p.name))
    return (on_disk, saved.get("skipped", [])) if on_disk == saved.get("files") else None


class _Unpacker:
    """Unpacks zips into a staging folder ``tmp``, where nested zips are copied too."""

    def __init__(self, tmp: Path, extensions: tuple[str, ...], hint: str, budget: ArchiveBudget):
        self.tmp, self.extensions, self.hint, self.budget = tmp, extensions, hint, budget
        self.skipped: list[dict[str, str]] = []

    def admitted(self, info: zipfile.ZipInfo, label: str, depth: int) -> bool:
        """Whether ``info`` is within the archive limits (from its header): a member too large
        is skipped and reported, any other limit fails the extraction."""
        refusal = self.budget.refusal(info, depth)
        if refusal is None:
            return True
        reason = refused(*refusal, "extract")
        if refusal[0] != "max_member_mb":
            raise ArchiveExtractError(
                f"{label}, at '{info.filename}': {reason}. Nothing was extracted; raise the "
                "limit if you trust the archive."
            )
        logger.warning("Skipped '%s' of %s: %s.", info.filename, label, reason)
        self.skipped.append({"file": info.filename, "reason": reason})
        return False

    def members(self, archive: zipfile.ZipFile, label: str, into: Path, depth: int) -> int:
        """Write the images of ``archive`` under ``into`` and unpack its zips; count images.
        Folders are made even when empty: an empty class folder must be seen to be reported."""
        count = 0
        for info in archive.infolist():
            # Checked before the dot-file filter, which would take ".." for a dot-file.
            relative = safe_member_path(info.filename)
            if relative is None:
                raise ArchiveExtractError(
                    f"{label} contains the entry '{info.filename}', whose path leads outside "
                    "the extraction folder (zip-slip). Nothing was extracted. The archive is "
                    "damaged or malicious: get it again from a source you trust."
                )
            destination, suffix = into.joinpath(*relative.parts), relative.suffix.lower()
            if info.is_dir() and not is_ignored(info.filename.rstrip("/")):
                destination.mkdir(parents=True, exist_ok=True)
            elif is_ignored(info.filename) or suffix not in (".zip", *self.extensions):
                continue
            elif suffix == ".zip" and self.admitted(info, label, depth + 1):
                count += self.zip_member(archive, info, label, destination.parent, depth + 1)
            elif suffix != ".zip" and self.admitted(info, label, depth):
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                count += 1
        return count

    def zip_member(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, into: Path, depth: int
    ) -> int:
        """Unpack a member zip into ``into``, beside where its own entry would be."""
        # Copied to a file first: a zip reader seeks backwards, and seeking back in a
        # compressed member re-decompresses it from its start every time.
        copy = self.tmp / f".nested-{uuid.uuid4().hex[:8]}.zip"
        with archive.open(info) as src, open(copy, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        inner_label = f"'{info.filename}' inside {label}"
        try:
            with zipfile.ZipFile(copy) as inner:
                return self.members(inner, inner_label, into, depth)
        except _CORRUPT as exc:
            raise ArchiveExtractError(
                f"{inner_label} is truncated or corrupt ({exc}). {self.hint}"
            ) from exc
        finally:
            copy.unlink(missing_ok=True)
