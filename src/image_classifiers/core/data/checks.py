"""Checks of a split's data before a long run: labels that look wrong, the same photo twice
(within a subset or leaking across subsets) and class balance. No Kedro, no MLflow.

Label issues: cleanlab's confident learning on out-of-fold probabilities of a logistic
regression on PCA components of the images shrunk to ``feature_size`` pixels. Why this model:
it needs no pretrained weights (unreachable offline) and k folds of it take seconds on two
cores, where k trainings of the configured convnet would take hours on a CPU; digits are
separable enough this way for flipped labels to stand out, photos much less (see README).
Duplicates: identical content (file bytes, or an array row's pixels) is ``exact``; the same
photo resized, slightly cropped or re-encoded (``near``) shares most bits of its difference
hash (brighter-than-right-neighbour on the grey ``hash_size`` thumbnail) and its thumbnail
correlates highly with the other's; the hash alone matches unrelated images with flat areas.
"""

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from image_classifiers.core.data.keras_datasets import is_array_row, read_array_rows
from image_classifiers.core.data.split import SplitError
from image_classifiers.core.images import decode_images, read_rows
from image_classifiers.core.params import DataChecksParams, SplitParams

logger = logging.getLogger(__name__)

DUPLICATE_COLUMNS = [
    "file_a",
    "split_a",
    "file_b",
    "split_b",
    "similarity",
    "correlation",
    "kind",
    "leakage",
]
ISSUE_COLUMNS = ["file", "split", "given", "suggested", "score", "issue"]


class DataChecksError(ValueError):
    """Data the checks cannot judge (one class, too few images, all identical); says why."""


def shrink(images: np.ndarray, size: tuple[int, int], grey: bool = False) -> np.ndarray:
    """``images`` (N, H, W, C uint8, may be memory-mapped) as float32 ``(N, h, w, C)`` (or
    ``(N, h, w)`` grey), each averaged over boxes of pixels; read in chunks."""
    height, width = size
    out = []
    for first in range(0, len(images), 512):
        for image in read_rows(images, slice(first, first + 512)).astype(np.float32):
            planes = [image.mean(-1)] if grey else np.moveaxis(image, -1, 0)
            resized = [
                Image.fromarray(p).resize((width, height), Image.Resampling.BOX) for p in planes
            ]
            out.append(np.stack(resized, axis=-1)[..., 0] if grey else np.stack(resized, axis=-1))
    return np.asarray(out, dtype=np.float32)


def fingerprints(images: np.ndarray, hash_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, its difference hash (``hash_size**2`` bits, packed) and its grey thumbnail
    (``hash_size`` × ``hash_size + 1``) centred and scaled to unit length."""
    grey = shrink(images, (hash_size, hash_size + 1), grey=True)
    hashes = np.packbits((grey[:, :, 1:] > grey[:, :, :-1]).reshape(len(images), -1), axis=1)
    thumbs = grey.reshape(len(images), -1)
    thumbs -= thumbs.mean(1, keepdims=True)
    return hashes, thumbs / np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-6)


def content_digests(files: Sequence[str], images: np.ndarray) -> list[str]:
    """sha256 of each file's bytes; of the pixels for an array row (``x_train.npy#12``) or a
    file no longer on disk."""
    digests = []
    for index, file in enumerate(files):
        if not is_array_row(file) and Path(file).is_file():
            digests.append(hashlib.sha256(Path(file).read_bytes()).hexdigest())
        else:
            digests.append(hashlib.sha256(read_rows(images, slice(index, index + 1))).hexdigest())
    return digests


def find_duplicates(
    files: Sequence[str],
    subsets: Sequence[str],
    digests: Sequence[str],
    prints: tuple[np.ndarray, np.ndarray],
    split: SplitParams,
) -> pd.DataFrame:
    """Pairs of the same image: each exact copy with the group's first file, then pairs of
    distinct contents whose hashes share ``split.duplicate_similarity`` of their bits and
    whose thumbnails correlate at ``split.duplicate_correlation`` (a hash alone matches
    unrelated images with large flat areas, e.g. digits). Pairs across subsets are
    ``leakage``. Exact first, then by similarity."""
    first: dict[str, int] = {}
    pairs = []
    for index, digest in enumerate(digests):
        if digest in first:
            pairs.append((first[digest], index, 1.0, 1.0, "exact"))
        else:
            first[digest] = index
    unique = np.fromiter(first.values(), dtype=np.int64)
    hashes, thumbs = prints[0][unique], prints[1][unique]
    bits = split.hash_size**2
    most = math.floor((1 - split.duplicate_similarity) * bits + 1e-9)  # differing bits allowed
    for start in range(0, len(unique), 256):
        # Hamming distances of a block of hashes to all: popcount of the XOR.
        block = np.bitwise_count(hashes[start : start + 256, None] ^ hashes[None]).sum(-1)
        for a, b in zip(*np.nonzero(block <= most), strict=True):
            correlation = float(thumbs[start + a] @ thumbs[b])
            if start + a < b and correlation >= split.duplicate_correlation:
                similarity = 1 - block[a, b] / bits
                pairs.append((unique[start + a], unique[b], similarity, correlation, "near"))
    frame = pd.DataFrame(
        [
            (files[a], subsets[a], files[b], subsets[b], round(s, 4), round(c, 4), kind)
            for a, b, s, c, kind in pairs
        ],
        columns=DUPLICATE_COLUMNS[:-1],
    )
    frame["leakage"] = frame["split_a"] != frame["split_b"]
    return frame.sort_values(
        ["kind", "similarity", "correlation"], ascending=[True, False, False], ignore_index=True
    )


def out_of_fold_probabilities(
    images: np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    checks: DataChecksParams,
) -> np.ndarray:
    """``(N, classes)`` probabilities, each from the fold model that did not see the image;
    ``images`` one array or several in a row (each shrunk in chunks: no copy of a split)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parts = [images] if isinstance(images, np.ndarray) else images
    size = (checks.feature_size,) * 2
    features = np.concatenate([shrink(part, size).reshape(len(part), -1) for part in parts])
    # PCA fits on each fold's training part: no more components than it has images.
    smallest = len(labels) - -(-len(labels) // checks.folds) - num_classes
    components = max(1, min(checks.components, features.shape[1], smallest))
    model = make_pipeline(
        StandardScaler(),
        PCA(components, random_state=checks.seed),
        LogisticRegression(C=checks.regularization, max_iter=checks.max_iter),
    )
    folds = StratifiedKFold(checks.folds, shuffle=True, random_state=checks.seed)
    probabilities = np.zeros((len(labels), num_classes))
    present = np.unique(labels)  # a class without images gets probability 0
    probabilities[:, present] = cross_val_predict(
        model, features, labels, cv=folds, method="predict_proba"
    )
    return probabilities


def rank_label_issues(
    files: Sequence[str],
    subsets: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """Every image, most suspicious first: cleanlab's label quality score (self-confidence,
    lower is worse) and whether ``find_label_issues`` flags it."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    scores = get_label_quality_scores(labels, probabilities)
    flagged = find_label_issues(labels, probabilities)
    names = np.asarray(classes, dtype=object)
    frame = pd.DataFrame(
        {
            "file": files,
            "split": subsets,
            "given": names[labels],
            "suggested": names[probabilities.argmax(1)],
            "score": scores.round(6),
            "issue": flagged,
        },
        columns=ISSUE_COLUMNS,
    )
    return frame.sort_values("score", kind="stable", ignore_index=True)


def class_balance(sets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Images per class and subset, and the largest class over the smallest (per subset and
    in all)."""
    classes = next(iter(sets.values()))["classes"]
    counts = {
        subset: dict(
            zip(classes, np.bincount(s["labels"], minlength=len(classes)).tolist(), strict=True)
        )
        for subset, s in sets.items()
    }
    counts["all"] = {c: sum(counts[s][c] for s in sets) for c in classes}
    ratio = {
        s: max(n.values()) / min(n.values()) if min(n.values()) else None for s, n in counts.items()
    }
    return {"classes": list(classes), "images": counts, "imbalance_ratio": ratio}


def check_labels_possible(labels: np.ndarray, classes: Sequence[str], folds: int) -> None:
    """Raise ``DataChecksError`` unless every class has at least ``folds`` images."""
    counts = np.bincount(labels, minlength=len(classes))
    if np.count_nonzero(counts) < 2:
        raise DataChecksError(
            f"The training and validation splits hold one class only ({classes[labels[0]]!r}): "
            "labels cannot be checked. Split at least two classes (split.classes)."
        )
    if few := {c: int(n) for c, n in zip(classes, counts, strict=True) if 0 < n < folds}:
        raise DataChecksError(
            f"Classes {few} have fewer training and validation images than "
            f"data_checks.folds={folds}: each fold needs every class. Lower data_checks.folds "
            "(at least 2), add images, or leave those classes out (split.classes)."
        )


def run_checks(
    sets: dict[str, dict[str, Any]], split: SplitParams, checks: DataChecksParams
) -> dict[str, Any]:
    """All checks of decoded image sets (``{subset: image_set}``): ``label_issues`` (train and
    validation), ``near_duplicates``, ``class_balance``, ``summary`` (counts). Raises
    ``DataChecksError`` before computing anything it cannot finish."""
    files = [f for s in sets.values() for f in s["files"]]
    subsets = [name for name, s in sets.items() for _ in s["files"]]
    classes = next(iter(sets.values()))["classes"]
    labelled = [name for name in ("train", "validation") if name in sets]
    labels = np.concatenate([np.asarray(sets[n]["labels"], dtype=np.int64) for n in labelled])
    check_labels_possible(labels, classes, checks.folds)
    digests = [d for s in sets.values() for d in content_digests(s["files"], s["images"])]
    if len(set(digests)) == 1:
        raise DataChecksError(
            f"All {len(digests)} images are identical: there is nothing to learn or check. "
            "Check the source data (download.local_path) and the split."
        )
    parts = [fingerprints(s["images"], split.hash_size) for s in sets.values()]
    prints = np.concatenate([h for h, _ in parts]), np.concatenate([t for _, t in parts])
    duplicates = find_duplicates(files, subsets, digests, prints, split)
    images = [sets[n]["images"] for n in labelled]
    probabilities = out_of_fold_probabilities(images, labels, len(classes), checks)
    issues = rank_label_issues(
        files[: len(labels)], subsets[: len(labels)], labels, probabilities, classes
    )
    balance = class_balance(sets)
    summary = {
        "images": len(files),
        "label_issues": int(issues["issue"].sum()),
        "out_of_fold_accuracy": float(np.mean(probabilities.argmax(1) == labels)),
        "exact_duplicates": int((duplicates["kind"] == "exact").sum()),
        "near_duplicates": int((duplicates["kind"] == "near").sum()),
        "leaking_pairs": int(duplicates["leakage"].sum()),
        "imbalance_ratio": balance["imbalance_ratio"]["all"],
    }
    return {
        "label_issues": issues,
        "near_duplicates": duplicates,
        "class_balance": balance,
        "summary": summary,
    }


def markdown_report(
    summary: dict[str, Any],
    issues: pd.DataFrame,
    duplicates: pd.DataFrame,
    balance: dict[str, Any],
    top: int = 10,
) -> str:
    """A ``## Data checks`` section for a model card."""
    ratio = summary["imbalance_ratio"]
    counts = ", ".join(f"{c} {n}" for c, n in balance["images"]["all"].items())
    leaks = duplicates[duplicates["leakage"]]
    lines = [
        "## Data checks",
        "",
        f"- {summary['images']} images; per class: {counts}; imbalance ratio "
        f"{'n/a' if ratio is None else f'{ratio:.2f}'}.",
        f"- Label issues (cleanlab, out-of-fold accuracy {summary['out_of_fold_accuracy']:.3f}): "
        f"{summary['label_issues']} flagged of {len(issues)} training and validation images.",
        f"- Duplicates: {summary['exact_duplicates']} exact, {summary['near_duplicates']} near; "
        f"{summary['leaking_pairs']} pairs across subsets (leakage).",
        "",
        "| file | split | given | suggested | score |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r.file} | {r.split} | {r.given} | {r.suggested} | {r.score:.4f} |"
            for r in issues.head(top).itertuples()
        ),
    ]
    if len(leaks):
        lines += ["", "Leaking pairs (first shown):", ""]
        lines += [
            f"- {r.file_a} ({r.split_a}) = {r.file_b} ({r.split_b}), {r.kind}, {r.similarity:.3f}"
            for r in leaks.head(top).itertuples()
        ]
    return "\n".join(lines) + "\n"


def read_small(files: Sequence[str], size: int = 64) -> np.ndarray:
    """Manifest files (or array rows) decoded to ``size``² for hashing; unreadable files
    come back black (the decode step reports them)."""
    rows = [f for f in files if is_array_row(f)]
    if len(rows) == len(files):
        return read_array_rows(list(files), (size, size), "bilinear")
    if rows:
        raise DataChecksError("A manifest mixes array rows and image files.")
    images, kept, _ = decode_images(files, (size, size))
    out = np.zeros((len(files), size, size, 3), np.uint8)
    out[kept] = images
    return out


def apply_exclusions(manifest: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """The manifest without ``split.exclude``'s files (as in the manifest, or a path ending:
    ``cat.12.jpg``); names that match nothing are an error."""
    if not split.exclude:
        return manifest
    files = manifest["file"].astype(str)
    drop = np.zeros(len(files), bool)
    missing = []
    for name in split.exclude:
        hits = (files == name) | files.str.endswith("/" + name.lstrip("/"))
        missing += [] if hits.any() else [name]
        drop |= hits.to_numpy()
    if missing:
        raise SplitError(
            f"split.exclude names {len(missing)} files not in the split: {missing[:10]}. Give "
            "them as in split_manifest.csv (or label_issues.csv's file column), or by the end "
            "of their path (cat.12.jpg)."
        )
    logger.info("Left out %d images listed in split.exclude.", int(drop.sum()))
    return manifest[~drop].reset_index(drop=True)


def drop_duplicates(manifest: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """The manifest without exact copies (the first, in subset order, stays) and without the
    later copy of each near-duplicate pair that straddles two subsets."""
    files = manifest["file"].astype(str).tolist()
    small = read_small(files)
    duplicates = find_duplicates(
        files,
        manifest["subset"].tolist(),
        content_digests(files, small),
        fingerprints(small, split.hash_size),
        split,
    )
    gone = duplicates[(duplicates["kind"] == "exact") | duplicates["leakage"]]["file_b"]
    logger.info(
        "split.drop_duplicates: dropped %d images (%d exact copies, %d leaking near copies).",
        gone.nunique(),
        int((duplicates["kind"] == "exact").sum()),
        int((duplicates["leakage"] & (duplicates["kind"] == "near")).sum()),
    )
    return manifest[~manifest["file"].isin(set(gone))].reset_index(drop=True)
