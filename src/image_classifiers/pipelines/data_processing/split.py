"""Split the extracted images into subsets by file-name index, like the book's ``make_subset``.

A file ``<class>.<N>.<ext>`` goes to every subset whose ``[start, stop)`` range holds
``N``; the ranges may not overlap, so no file is in two subsets. Or, with ``split.fractions``,
each class is shuffled from ``split.seed`` and cut into those fractions (stratified); the
helpers for that (``assign_by_fractions``, ``assign_by_positions``) serve every source.
Files are copied byte for byte into ``<target_dir>/<subset>/<class>/``, which is replaced
as a whole, and only after every copy succeeded.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ._files import publish_dir, staging_dir
from .extract import is_ignored

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<label>.+)\.(?P<index>\d+)\.(?P<ext>[^.]+)$")
MANIFEST_COLUMNS = ["file", "class", "subset"]
#: The subsets every split produces (decoded into the catalog's ``<subset>_set``).
SUBSETS = ("train", "validation", "test")
T = TypeVar("T")


class SplitError(ValueError):
    """Bad split parameters or missing source images; the message says what to do."""


def split_images(extracted_images: dict[str, Any], split: dict[str, Any]) -> pd.DataFrame:
    """Copy each class's index ranges into ``<target_dir>/<subset>/<class>/``.

    Args:
        extracted_images: The record of the extract node (``path`` of the images).
        split: ``classes`` (file-name prefixes), ``ranges`` (``{subset: [start, stop]}``,
            per class) or ``fractions`` (``{subset: fraction}``, adding up to 1) with
            ``seed``, ``target_dir``.

    Returns:
        The manifest: one row per copied file with columns ``file`` (its new path),
        ``class`` and ``subset``, in subset, class, index order.

    Raises:
        SplitError: Bad classes or ranges (incl. overlapping ones), or source files missing.
    """
    classes = check_classes(split["classes"])
    mode, bounds = split_mode(split)
    source_dir = Path(extracted_images["path"])
    sources = index_images(source_dir, classes)

    if mode == "fractions":
        ordered = {
            c: [sources[k] for k in sorted(k for k in sources if k[0] == c)] for c in classes
        }
        empty = [c for c, files in ordered.items() if not files]
        if empty:
            raise SplitError(
                f"No <class>.<N> images for classes {empty} in '{source_dir}'. Check "
                "split.classes against the file names."
            )
        plan = [(s, c, f) for s, c, f in assign_by_fractions(ordered, bounds, split_seed(split))]
    else:
        plan, missing = [], {}
        for subset, (start, stop) in bounds.items():
            for label in classes:
                for index in range(start, stop):
                    source = sources.get((label, index))
                    if source is None:
                        missing.setdefault((subset, label), []).append(index)
                    else:
                        plan.append((subset, label, source))
        if missing:
            raise SplitError(_missing_message(missing, sources, source_dir))
    return copy_into_subsets([(s, c, f, f.name) for s, c, f in plan], Path(split["target_dir"]))


def copy_into_subsets(plan: list[tuple[str, str, Path, str]], target: Path) -> pd.DataFrame:
    """Copy ``(subset, class, source, name)`` to ``<target>/<subset>/<class>/<name>``.

    The target folder is replaced as a whole, only after every copy succeeded.

    Returns:
        The manifest (``file``, ``class``, ``subset``), in ``plan`` order.
    """
    assert_disjoint([(subset, label, source) for subset, label, source, _ in plan])
    rows = []
    with staging_dir(target) as tmp:
        for subset, label in {(s, c): None for s, c, _, _ in plan}:
            (tmp / subset / label).mkdir(parents=True)
        for subset, label, source, name in plan:
            shutil.copyfile(source, tmp / subset / label / name)
            rows.append(((target / subset / label / name).as_posix(), label, subset))
        publish_dir(tmp, target)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    log_counts(manifest, f"Copied {len(manifest)} images into {target}")
    return manifest


def log_counts(manifest: pd.DataFrame, what: str) -> None:
    """Log how many images each subset holds per class."""
    counts = manifest.groupby(["subset", "class"], sort=False).size()
    logger.info("%s: %s", what, ", ".join(f"{s}/{c} {n}" for (s, c), n in counts.items()))


def split_mode(split: Mapping[str, Any], subsets: Sequence[str] = SUBSETS) -> tuple[str, Any]:
    """``("ranges", {subset: (start, stop)})`` or ``("fractions", {subset: fraction})``.

    Exactly one of ``split.ranges`` and ``split.fractions`` must be set.

    Raises:
        SplitError: Neither or both are set, or the one set is invalid.
    """
    ranges, fractions = split.get("ranges"), split.get("fractions")
    if (ranges is None) == (fractions is None):
        raise SplitError(
            "Set exactly one of split.ranges (per class [start, stop) index ranges) and "
            f"split.fractions (e.g. {{train: 0.8, validation: 0.2}}); got ranges={ranges!r}, "
            f"fractions={fractions!r}. On the command line, clear the other with "
            '--params="split.ranges=null" (or split.fractions=null).'
        )
    if fractions is not None:
        return "fractions", check_fractions(fractions, subsets)
    checked = check_ranges(ranges)
    _check_subset_names("split.ranges", checked, subsets)
    return "ranges", checked


def check_fractions(fractions: Any, subsets: Sequence[str] = SUBSETS) -> dict[str, float]:
    """Validate ``{subset: fraction}``: each in (0, 1], adding up to 1."""
    if not isinstance(fractions, Mapping) or not fractions:
        raise SplitError(
            "split.fractions must map subset names to fractions that add up to 1, e.g. "
            f"{{train: 0.8, validation: 0.1, test: 0.1}}, got {fractions!r}."
        )
    checked = {}
    for subset, value in fractions.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
        if not ok:
            raise SplitError(f"split.fractions.{subset} must be a number in (0, 1], got {value!r}.")
        checked[str(subset)] = float(value)
    _check_subset_names("split.fractions", checked, subsets)
    total = sum(checked.values())
    if abs(total - 1) > 1e-6:
        raise SplitError(
            f"split.fractions add up to {total:g}, not 1: "
            + ", ".join(f"{s} {v:g}" for s, v in checked.items())
            + ". Make them add up to 1 (to use less data, split by split.ranges instead)."
        )
    return checked


def _check_subset_names(key: str, given: Mapping[str, Any], subsets: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(subsets))
    if unknown:
        raise SplitError(
            f"{key} names subsets {unknown}; this dataset's split takes {list(subsets)}"
            + (
                " (its own test set is the test split)"
                if "test" in unknown and "test" not in subsets
                else ""
            )
            + "."
        )


def split_seed(split: Mapping[str, Any]) -> int:
    """``split.seed`` (the shuffle of a fraction split), an integer >= 0."""
    seed = split.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SplitError(f"split.seed must be an integer >= 0, got {seed!r}.")
    return seed


def assign_by_fractions(
    members: Mapping[str, Sequence[T]], fractions: Mapping[str, float], seed: int
) -> list[tuple[str, str, T]]:
    """Per class, shuffle (from ``seed``) and cut into consecutive ``fractions``.

    Stratified: every class is cut alike, so each subset keeps the class balance. The counts
    are rounded by largest remainder, so they add up to the class's size; a class's shuffle
    depends only on the seed and its position, so adding a class changes no other class.

    Returns:
        ``(subset, class, member)`` in subset, class order.
    """
    plan: dict[str, list[tuple[str, str, T]]] = {subset: [] for subset in fractions}
    for position, (label, items) in enumerate(members.items()):
        order = np.random.default_rng([seed, position]).permutation(len(items))
        start = 0
        for subset, count in zip(fractions, _counts(len(items), fractions), strict=True):
            plan[subset].extend(
                (subset, label, items[i]) for i in sorted(order[start : start + count])
            )
            start += count
    return [row for rows in plan.values() for row in rows]


def assign_by_positions(
    members: Mapping[str, Sequence[T]], ranges: Mapping[str, tuple[int, int]], what: str
) -> list[tuple[str, str, T]]:
    """Per class, the members at positions ``[start, stop)`` of each range.

    Raises:
        SplitError: A class has fewer members than a range needs (all such listed).
    """
    short = {
        label: len(items)
        for label, items in members.items()
        if len(items) < max(stop for _, stop in ranges.values())
    }
    if short:
        need = max(stop for _, stop in ranges.values())
        raise SplitError(
            f"split.ranges need {need} {what} per class, but "
            + ", ".join(f"'{c}' has {n}" for c, n in short.items())
            + ". Shrink split.ranges, or split by split.fractions."
        )
    return [
        (subset, label, items[i])
        for subset, (start, stop) in ranges.items()
        for label, items in members.items()
        for i in range(start, stop)
    ]


def _counts(total: int, fractions: Mapping[str, float]) -> list[int]:
    exact = [total * f for f in fractions.values()]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def check_classes(classes: Any) -> list[str]:
    """Validate the class list (unique, non-empty names usable as folder names)."""
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise SplitError(f"split.classes must be a list of names, got {classes!r}.")
    names = [str(c) for c in classes]
    bad = [n for n in names if not n or "/" in n or "\\" in n or n.startswith(".")]
    if len(names) < 2 or bad or len(set(names)) != len(names):
        raise SplitError(
            f"split.classes must list at least two distinct file-name prefixes (e.g. "
            f"[cat, dog] for cat.0.jpg, dog.0.jpg), got {names!r}."
        )
    return names


def check_ranges(ranges: Any) -> dict[str, tuple[int, int]]:
    """Validate ``{subset: [start, stop]}`` and check that no two ranges overlap."""
    if not isinstance(ranges, Mapping) or not ranges:
        raise SplitError(
            "split.ranges must map subset names to [start, stop], e.g. "
            f"{{train: [0, 1000], validation: [1000, 1500]}}, got {ranges!r}."
        )
    checked = {}
    for subset, bounds in ranges.items():
        try:
            start, stop = (int(b) for b in bounds)
            ok = 0 <= start < stop and all(float(b) == int(b) for b in bounds)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SplitError(
                f"split.ranges.{subset} must be [start, stop] with 0 <= start < stop "
                f"(stop excluded), got {bounds!r}."
            )
        checked[str(subset)] = (start, stop)
    for (a, (a0, a1)), (b, (b0, b1)) in combinations(checked.items(), 2):
        shared = min(a1, b1) - max(a0, b0)
        if shared > 0:
            raise SplitError(
                f"split.ranges overlap: {a} [{a0}, {a1}) and {b} [{b0}, {b1}) share "
                f"{shared} indices ({max(a0, b0)}–{min(a1, b1) - 1}), so those files would "
                "be in two subsets. Make the ranges disjoint."
            )
    return checked


def index_images(folder: Path, classes: list[str]) -> dict[tuple[str, int], Path]:
    """Map ``(class, N)`` to the file ``<class>.<N>.<ext>`` anywhere under ``folder``."""
    if not folder.is_dir():
        raise SplitError(
            f"'{folder}' does not exist; run the extract step first "
            "(kedro run --pipelines=data_processing)."
        )
    wanted = set(classes)
    found: dict[tuple[str, int], Path] = {}
    for path in sorted(folder.rglob("*")):
        match = _NAME.match(path.name)
        if not match or match["label"] not in wanted or is_ignored(path.name):
            continue
        key = (match["label"], int(match["index"]))
        if key in found:
            raise SplitError(
                f"Two files for {key[0]} #{key[1]}: '{found[key]}' and '{path}'. Keep one."
            )
        found[key] = path
    return found


def compact_ranges(indices: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1–3, 7, 9–10"``."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def assert_disjoint(plan: Iterable[tuple[str, str, Any]]) -> None:
    """Fail if any source would land in two subsets (a guard: no split mode can do it)."""
    seen: dict[Any, str] = {}
    for subset, _, source in plan:
        if source in seen:
            raise SplitError(f"'{source}' would be in both {seen[source]} and {subset}.")
        seen[source] = subset


def _missing_message(
    missing: dict[tuple[str, str], list[int]],
    sources: dict[tuple[str, int], Path],
    source_dir: Path,
) -> str:
    total = sum(len(v) for v in missing.values())
    details = "; ".join(
        f"{subset}/{label}: {compact_ranges(indices)}"
        for (subset, label), indices in missing.items()
    )
    available = {}
    for label, index in sources:
        available.setdefault(label, []).append(index)
    have = "; ".join(f"{c}: {compact_ranges(v)}" for c, v in sorted(available.items())) or "none"
    return (
        f"{total} source images are missing for split.ranges -- {details}. "
        f"'{source_dir}' holds indices {have}. Shrink split.ranges to what the archive "
        "holds, or use a complete archive."
    )
