"""Assign every image to one subset, by index ranges or stratified fractions, and copy.

``kaggle_names``: a range ``[start, stop)`` takes the ``<class>.<N>.<ext>`` files whose ``N``
lies in it (the book's ``make_subset``); ``class_folders``: one folder per class, a range
counts positions in natural order. Fractions shuffle each class from ``split.seed`` and keep
the class balance. ``<target_dir>/<subset>/<class>/`` is replaced whole once every copy succeeded.
"""

import logging
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from image_classifiers.core.params import SplitParams

from .extract import atomic_dir
from .inputs import input_files, is_ignored

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["file", "class", "subset"]
#: The subsets every split produces (decoded into the catalog's ``<subset>_set``).
SUBSETS = ("train", "validation", "test")
_NAME = re.compile(r"^(?P<label>.+)\.(?P<index>\d+)\.[^.]+$")
_DIGITS = re.compile(r"(\d+)")
T = TypeVar("T")


class SplitError(ValueError):
    """Split parameters that do not fit the data; the message says what to do."""


def split_kaggle_names(
    extracted: dict[str, Any], split: SplitParams
) -> tuple[pd.DataFrame, list[str]]:
    """Split ``<class>.<N>.<ext>`` files; ``split.classes`` lists the file-name prefixes."""
    if split.classes is None:
        raise SplitError(
            "split.classes must list the file-name prefixes (e.g. [cat, dog] for cat.0.jpg)."
        )
    folder = Path(extracted["path"])
    members = _index_images(folder, split.classes)
    plan = assign(members, split, f"'{folder}'")
    return _copy_into_subsets([(s, c, p, p.name) for s, c, p in plan], split), split.classes


def split_class_folders(
    extracted: dict[str, Any], split: SplitParams
) -> tuple[pd.DataFrame, list[str]]:
    """Split one folder per class; ``split.classes`` null means every class folder, sorted."""
    folder, found = find_class_folders(Path(extracted["path"]), extracted["extensions"])
    classes = sorted(found) if split.classes is None else split.classes
    missing = [c for c in classes if c not in found]
    if missing:
        raise SplitError(
            f"split.classes {classes} must name class folders of '{folder}', which holds "
            f"{sorted(found)} (no folder for {missing}). Or set split.classes=null to use "
            "them all."
        )
    if left_out := sorted(set(found) - set(classes)):
        logger.info("Class folders not in split.classes, left out: %s", left_out)
    members = {c: dict(enumerate(found[c])) for c in classes}
    plan = assign(members, split, f"'{folder}'")
    # Images of a class may sit in sub-folders, so their names alone can collide.
    named = [(s, c, p, "__".join(p.relative_to(folder / c).parts)) for s, c, p in plan]
    return _copy_into_subsets(named, split), classes


def assign(
    members: Mapping[str, Mapping[int, T]],
    split: SplitParams,
    where: str,
    subsets: Sequence[str] = SUBSETS,
) -> list[tuple[str, str, T]]:
    """``(subset, class, member)`` for each chosen member, in subset, class, key order.

    ``members``: per class, its members by key (``N`` of the file name, or position).
    """
    parts = split.fractions or split.ranges
    unknown = sorted(set(parts) - set(subsets))
    if unknown:
        own_test = " (its own test set is the test split)" if "test" not in subsets else ""
        raise SplitError(
            f"split.{'fractions' if split.fractions else 'ranges'} names subsets {unknown}; "
            f"this dataset's split takes {list(subsets)}{own_test}."
        )
    if split.fractions:
        return _by_fractions(members, split.fractions, split.seed, where)
    plan, missing = [], {}
    for subset, (start, stop) in split.ranges.items():
        for label, items in members.items():
            for key in range(start, stop):
                if key in items:
                    plan.append((subset, label, items[key]))
                else:
                    missing.setdefault((subset, label), []).append(key)
    if missing:
        details = "; ".join(f"{s}/{c}: {compact_ranges(keys)}" for (s, c), keys in missing.items())
        have = "; ".join(f"{c}: {compact_ranges(keys)}" for c, keys in members.items() if keys)
        raise SplitError(
            f"{sum(map(len, missing.values()))} source images are missing for split.ranges "
            f"-- {details}. Indices in {where}: {have or 'none'}. Shrink split.ranges to "
            "what is there, split by split.fractions, or use a complete archive."
        )
    return plan


def _by_fractions(
    members: Mapping[str, Mapping[int, T]], fractions: dict[str, float], seed: int, where: str
) -> list[tuple[str, str, T]]:
    empty = [label for label, items in members.items() if not items]
    if empty:
        raise SplitError(f"No images for classes {empty} in {where}. Check split.classes.")
    plan: dict[str, list[tuple[str, str, T]]] = {subset: [] for subset in fractions}
    left_out: dict[str, list[str]] = {}  # subset -> classes with no image in it
    for position, (label, by_key) in enumerate(members.items()):
        items = list(by_key.values())
        # A class's shuffle depends only on the seed and its position: adding a class
        # changes no other class's split.
        order = np.random.default_rng([seed, position]).permutation(len(items))
        exact = np.array([len(items) * f for f in fractions.values()])
        counts = exact.astype(int)
        # The largest remainders get the leftovers, so the counts add up to the class's size.
        counts[np.argsort(counts - exact, kind="stable")[: len(items) - counts.sum()]] += 1
        for subset, part in zip(fractions, np.split(order, np.cumsum(counts)[:-1]), strict=True):
            plan[subset].extend((subset, label, items[i]) for i in np.sort(part))
            if len(part) == 0 and fractions[subset] > 0:
                left_out.setdefault(subset, []).append(f"{label} ({len(items)} images)")
    for subset, labels in left_out.items():
        logger.warning(
            "split.fractions leave classes %s without %s images: their %s metrics will be "
            "missing. Add images to them or raise split.fractions.%s.",
            ", ".join(labels),
            subset,
            subset,
            subset,
        )
    return [row for rows in plan.values() for row in rows]


def _copy_into_subsets(plan: list[tuple[str, str, Path, str]], split: SplitParams) -> pd.DataFrame:
    """Copy ``(subset, class, source, name)`` to ``<target_dir>/<subset>/<class>/<name>``."""
    target = Path(split.target_dir)
    rows = []
    with atomic_dir(target) as tmp:
        for subset, label, source, name in plan:
            (tmp / subset / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / subset / label / name)
            rows.append(((target / subset / label / name).as_posix(), label, subset))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    log_counts(manifest, f"Copied {len(manifest)} images into {target}")
    return manifest


def log_counts(manifest: pd.DataFrame, what: str) -> None:
    """Log how many images each subset holds per class."""
    counts = manifest.groupby(["subset", "class"], sort=False).size()
    logger.info("%s: %s", what, ", ".join(f"{s}/{c} {n}" for (s, c), n in counts.items()))


def _index_images(folder: Path, classes: list[str]) -> dict[str, dict[int, Path]]:
    """Per class, ``{N: path}`` of the files ``<class>.<N>.<ext>`` anywhere under ``folder``."""
    if not folder.is_dir():
        raise SplitError(
            f"'{folder}' does not exist; run the extract step first "
            "(kedro run --pipelines=data_processing)."
        )
    found: dict[str, dict[int, Path]] = {label: {} for label in classes}
    for path in sorted(folder.rglob("*")):
        match = _NAME.match(path.name)
        if not match or match["label"] not in found or is_ignored(path.name):
            continue
        label, index = match["label"], int(match["index"])
        if index in found[label]:
            raise SplitError(
                f"Two files for {label} #{index}: '{found[label][index]}' and '{path}'. Keep one."
            )
        found[label][index] = path
    return {label: dict(sorted(items.items())) for label, items in found.items()}


def find_class_folders(root: Path, extensions: Iterable[str]) -> tuple[Path, dict[str, list[Path]]]:
    """The folder whose sub-folders are the classes, and each class's images (natural order)."""
    if not root.is_dir():
        raise SplitError(
            f"'{root}' does not exist or is not a folder; run the extract step first "
            "(or point download.local_path at a folder or zip of class folders)."
        )
    suffixes = tuple(e.lower() for e in extensions)
    folder = root
    while True:
        entries = [p for p in sorted(folder.iterdir()) if not is_ignored(p.name)]
        # A linked folder is never followed (extract_data reports it).
        subfolders = [p for p in entries if p.is_dir() and not p.is_symlink()]
        loose = [p for p in entries if p.is_file() and p.suffix.lower() in suffixes]
        if loose or len(subfolders) != 1:
            break
        folder = subfolders[0]
    if loose and folder != root:
        raise SplitError(
            f"Found only one class folder, '{folder}' ({len(loose)} images directly in it): "
            "a classifier needs at least two. Put each class's images in its own folder "
            "beside it (e.g. PetImages/Cat/, PetImages/Dog/)."
        )
    if loose:
        raise SplitError(
            f"{len(loose)} images lie directly in '{folder}', not in class folders (e.g. "
            f"{loose[0].name}). Put each class's images in a folder named after the class."
        )
    members = {p.name: _images_under(p, suffixes, root) for p in subfolders}
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
    return folder, members


def _natural_key(text: str) -> list[tuple[int, int, str]]:
    """Sort key in which ``2.jpg`` comes before ``10.jpg`` (digit runs compare as numbers)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(text)]


def _images_under(folder: Path, suffixes: tuple[str, ...], root: Path) -> list[Path]:
    """The images under ``folder``, in natural order; links only to files inside ``root``."""
    files, _ = input_files(folder, suffixes, root)
    return sorted(files, key=lambda path: _natural_key(path.relative_to(folder).as_posix()))


def compact_ranges(indices: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1–3, 7, 9–10"``."""
    # In a run of consecutive numbers, number minus position is the same.
    numbered = enumerate(sorted(indices))
    runs = [[i for _, i in run] for _, run in groupby(numbered, key=lambda p: p[1] - p[0])]
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
