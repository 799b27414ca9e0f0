"""Inputs confined to their folder, and archives read within limits.

A symbolic link is followed only to a file inside the input folder, never to a folder; named
pipes, sockets and devices are never opened. Each skipped entry comes back with its reason
(for the data-quality report or the prediction's row). Archive members are checked against
``ArchiveLimits`` from their header before a byte is read; ``zipfile`` never returns more than
the header's size (a member whose data is longer fails its CRC check), so a lying header costs
no memory either.
"""

import os
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from image_classifiers.core.params import ArchiveLimits

LINK_TO_FOLDER = "a symbolic link to a folder: not followed"
LINK_OUTSIDE = "a symbolic link to outside the input folder: not followed"
NOT_REGULAR = "not a regular file (a named pipe, socket, device or broken link): not read"
MEGABYTE = 1 << 20


def is_ignored(name: str) -> bool:
    """macOS resource forks (``__MACOSX/``, ``._x``), other dot-files and folders."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.endswith("/") or any(p == "__MACOSX" or p.startswith(".") for p in parts)


def input_files(
    folder: Path, suffixes: Iterable[str], root: Path | None = None
) -> tuple[list[Path], list[dict[str, str]]]:
    """The paths of the regular files under ``folder`` whose names end in ``suffixes``
    (dot-files left out), and the entries skipped, ``{"file": <relative to root>, "reason"}``;
    ``root`` (default ``folder``) is the folder no symbolic link may lead out of."""
    root = Path(root or folder)
    inside, suffixes = root.resolve(), tuple(s.lower() for s in suffixes)
    files: list[Path] = []
    skipped: list[dict[str, str]] = []
    pending = [Path(folder)]
    while pending:  # scandir knows files, folders and links without a stat per file
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if is_ignored(entry.name):
                    continue
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                    continue
                wanted = entry.name.lower().endswith(suffixes)
                # os.path, not the entry: a link loop is no error for it, just no file.
                if entry.is_symlink() and os.path.isdir(path):
                    reason = LINK_TO_FOLDER
                elif not wanted:
                    continue
                elif entry.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(inside):
                    reason = LINK_OUTSIDE
                elif not (os.path.isfile(path) if entry.is_symlink() else entry.is_file()):
                    reason = NOT_REGULAR
                else:
                    files.append(path)
                    continue
                skipped.append({"file": path.relative_to(root).as_posix(), "reason": reason})
    return files, sorted(skipped, key=lambda item: item["file"])


class ArchiveBudget:
    """What is left of an archive's ``ArchiveLimits`` while its members are read."""

    def __init__(self, limits: ArchiveLimits):
        self.limits, self.members, self.total = limits, 0, 0

    def refusal(
        self, info: zipfile.ZipInfo | tarfile.TarInfo, depth: int = 0
    ) -> tuple[str, str] | None:
        """``(limit, why)`` if ``info`` (a member ``depth`` zips deep) is not to be read, from
        its header, before reading; None if it may be (its size then counts to the total)."""
        limits = self.limits
        size = info.file_size if isinstance(info, zipfile.ZipInfo) else info.size
        self.members += 1
        if self.members > limits.max_members:
            return "max_members", f"the archive holds over {limits.max_members} members"
        if depth > limits.max_depth:
            return "max_depth", f"zips nested over {limits.max_depth} deep"
        if size > limits.max_member_mb * MEGABYTE:
            return "max_member_mb", f"{size / MEGABYTE:.0f} MB uncompressed, over the limit"
        if self.total + size > limits.max_total_mb * MEGABYTE:
            return "max_total_mb", f"the members pass {limits.max_total_mb} MB uncompressed"
        self.total += size
        return None


def refused(limit: str, why: str, section: str) -> str:
    """The reason a member was not read, naming the parameter that allows it."""
    return f"not read: {why} ({section}.archive_limits.{limit})"
