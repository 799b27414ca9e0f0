"""Split the extracted images into subsets by file-name index, like the book's ``make_subset``.

A file ``<class>.<N>.<ext>`` goes to every subset whose ``[start, stop)`` range holds
``N``; the ranges may not overlap, so no file is in two subsets. Files are copied byte for
byte into ``<target_dir>/<subset>/<class>/``, which is replaced as a whole, and only after
every copy succeeded.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from ._files import publish_dir, staging_dir
from .extract import is_ignored

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<label>.+)\.(?P<index>\d+)\.(?P<ext>[^.]+)$")
MANIFEST_COLUMNS = ["file", "class", "subset"]


class SplitError(ValueError):
    """Bad split parameters or missing source images; the message says what to do."""


def split_images(extracted_images: dict[str, Any], split: dict[str, Any]) -> pd.DataFrame:
    """Copy each class's index ranges into ``<target_dir>/<subset>/<class>/``.

    Args:
        extracted_images: The record of the extract node (``path`` of the images).
        split: ``classes`` (file-name prefixes), ``ranges`` (``{subset: [start, stop]}``,
            per class), ``target_dir``.

    Returns:
        The manifest: one row per copied file with columns ``file`` (its new path),
        ``class`` and ``subset``, in subset, class, index order.

    Raises:
        SplitError: Bad classes or ranges (incl. overlapping ones), or source files missing.
    """
    classes = check_classes(split["classes"])
    ranges = check_ranges(split["ranges"])
    source_dir = Path(extracted_images["path"])
    target = Path(split["target_dir"])
    sources = index_images(source_dir, classes)

    plan: list[tuple[str, str, Path]] = []
    missing: dict[tuple[str, str], list[int]] = {}
    for subset, (start, stop) in ranges.items():
        for label in classes:
            for index in range(start, stop):
                source = sources.get((label, index))
                if source is None:
                    missing.setdefault((subset, label), []).append(index)
                else:
                    plan.append((subset, label, source))
    if missing:
        raise SplitError(_missing_message(missing, sources, source_dir))
    _assert_disjoint(plan)

    rows = []
    with staging_dir(target) as tmp:
        for subset, label in {(s, c): None for s, c, _ in plan}:
            (tmp / subset / label).mkdir(parents=True)
        for subset, label, source in plan:
            shutil.copyfile(source, tmp / subset / label / source.name)
            rows.append(((target / subset / label / source.name).as_posix(), label, subset))
        publish_dir(tmp, target)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    counts = manifest.groupby(["subset", "class"], sort=False).size()
    logger.info(
        "Copied %d images into %s: %s",
        len(manifest),
        target,
        ", ".join(f"{s}/{c} {n}" for (s, c), n in counts.items()),
    )
    return manifest


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
            "(kedro run --pipeline=data_processing)."
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


def _assert_disjoint(plan: list[tuple[str, str, Path]]) -> None:
    seen: dict[Path, str] = {}
    for subset, _, source in plan:
        if source in seen:  # cannot happen with disjoint ranges; guards future changes
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
