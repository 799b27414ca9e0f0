"""The ``class_folders`` source: one folder per class, at any depth (``PetImages/Cat/...``).

The layout of ``keras.utils.image_dataset_from_directory`` and of Microsoft's "Kaggle Cats
and Dogs" download. The class folders are found by walking down from the top while a folder
holds nothing but a single sub-folder (``PetImages.zip`` -> ``PetImages/`` -> ``Cat/``,
``Dog/``); each sub-folder there is a class, named after the folder, and holds its images at
any depth below it. Files that are not images by name (``Thumbs.db``, ``.DS_Store``,
``readme.txt``) are left out; files that are named like images but cannot be decoded are
left to the decode step, which skips them and lists them in the data-quality report.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .extract import is_ignored
from .split import (
    SUBSETS,
    SplitError,
    assign_by_fractions,
    assign_by_positions,
    copy_into_subsets,
    split_mode,
    split_seed,
)

logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"(\d+)")


def find_class_folders(
    root: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS
) -> tuple[Path, dict[str, list[Path]]]:
    """Find the folder whose sub-folders are the classes, and each class's image files.

    Args:
        root: The extracted archive or the user's folder.
        extensions: File name endings that count as images (case-insensitive).

    Returns:
        ``(folder, {class: [image paths]})``, classes sorted by name, each class's files in
        natural order (``2.jpg`` before ``10.jpg``: what split.ranges positions count).

    Raises:
        SplitError: No images, images outside class folders, fewer than two classes, or a
            class folder without images.
    """
    if not root.is_dir():
        raise SplitError(
            f"'{root}' does not exist or is not a folder; run the extract step first "
            "(or point download.local_path at a folder or zip of class folders)."
        )
    suffixes = tuple(str(e).lower() for e in extensions)
    folder, descended = root, []
    while True:
        entries = [p for p in sorted(folder.iterdir()) if not is_ignored(p.name)]
        subfolders = [p for p in entries if p.is_dir()]
        loose = [p for p in entries if p.is_file() and p.suffix.lower() in suffixes]
        if loose or len(subfolders) != 1:
            break
        descended.append(subfolders[0].name)
        folder = subfolders[0]
    if loose:
        where = f"'{folder}'"
        if descended:
            raise SplitError(
                f"Found only one class folder, {where} ({len(loose)} images directly in it): "
                "a classifier needs at least two. Put each class's images in its own folder "
                "beside it (e.g. PetImages/Cat/, PetImages/Dog/)."
            )
        raise SplitError(
            f"{len(loose)} images lie directly in {where}, not in class folders (e.g. "
            f"{loose[0].name}). Put each class's images in a folder named after the class."
        )
    members = {p.name: _images_under(p, suffixes) for p in subfolders}
    if len(members) < 2:
        raise SplitError(
            f"'{folder}' holds {len(members)} class folder(s) {sorted(members)}; a classifier "
            "needs at least two, one folder per class."
        )
    empty = sorted(name for name, files in members.items() if not files)
    if empty:
        raise SplitError(
            f"The class folders {empty} in '{folder}' hold no image files (ending in "
            f"{list(suffixes)}). Add images, remove the folders, or list the classes to use "
            "in split.classes."
        )
    return folder, dict(sorted(members.items()))


def split_class_folders(
    extracted: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, list[str]]:
    """Split each class folder by position ranges or stratified fractions and copy.

    Args:
        extracted: The extract record (``path``: the extracted archive or the user's folder;
            ``extensions``).
        split: ``classes`` (null: every class folder, sorted; or the names to use, in label
            order), ``ranges`` or ``fractions``, ``seed``, ``target_dir``.

    Returns:
        The manifest (``file``, ``class``, ``subset``) and the class names in label order.
    """
    mode, bounds = split_mode(split)
    folder, members = find_class_folders(
        Path(extracted["path"]), extracted.get("extensions") or DEFAULT_EXTENSIONS
    )
    classes = _chosen_classes(split.get("classes"), members, folder)
    members = {c: members[c] for c in classes}
    if mode == "fractions":
        plan = assign_by_fractions(members, bounds, split_seed(split))
    else:
        plan = assign_by_positions(members, bounds, "images")
    # Images of a class may sit in sub-folders, so their names alone can collide.
    named = [
        (subset, label, path, "__".join(path.relative_to(folder / label).parts))
        for subset, label, path in plan
    ]
    manifest = copy_into_subsets(named, Path(split["target_dir"]))
    return manifest, classes


def natural_key(path: Path | str) -> list[Any]:
    """Sort key in which ``2.jpg`` comes before ``10.jpg`` (digit runs compare as numbers)."""
    text = path.as_posix() if isinstance(path, Path) else path
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(text)]


def _images_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    # os.walk lists each folder once and knows files from folders without a stat per file;
    # rglob + is_file + relative_to per path cost twice the Kaggle source's whole split.
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not is_ignored(name)]
        relative = os.path.relpath(parent, folder)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        found.extend(
            prefix + name
            for name in files
            if name.lower().endswith(suffixes) and not is_ignored(name)
        )
    return [folder / name for name in sorted(found, key=natural_key)]


def _chosen_classes(
    wanted: Sequence[str] | None, members: dict[str, list[Path]], folder: Path
) -> list[str]:
    if wanted is None:
        return list(members)
    if isinstance(wanted, str):
        raise SplitError(f"split.classes must be a list of folder names or null, got {wanted!r}.")
    names = [str(c) for c in wanted]
    missing = [c for c in names if c not in members]
    if missing or len(set(names)) != len(names) or len(names) < 2:
        raise SplitError(
            f"split.classes {names} must name at least two distinct class folders of "
            f"'{folder}', which holds {sorted(members)}"
            + (f" (no folder for {missing})" if missing else "")
            + ". Or set split.classes=null to use them all."
        )
    left_out = sorted(set(members) - set(names))
    if left_out:
        logger.info("Class folders not in split.classes, left out: %s", left_out)
    return names


__all__ = ["SUBSETS", "find_class_folders", "split_class_folders"]
