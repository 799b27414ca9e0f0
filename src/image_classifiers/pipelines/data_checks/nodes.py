"""The checks node: every check of the decoded splits in one node, so that a check that
cannot run stops it before any report is written (core.data.checks does the work)."""

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from image_classifiers.core.data.checks import markdown_report, run_checks
from image_classifiers.core.images import read_rows
from image_classifiers.core.params import DataChecksParams, SplitParams
from image_classifiers.pipelines.model_training.nodes import image_grid, message_figure

logger = logging.getLogger(__name__)


def check_data(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    split: SplitParams,
    data_checks: DataChecksParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], str, Figure]:
    """Label issues, near-duplicates, class balance, a markdown section, the top suspects."""
    sets = {"train": train_set, "validation": validation_set, "test": test_set}
    checks = run_checks(sets, split, data_checks)
    issues, duplicates, summary = (
        checks["label_issues"],
        checks["near_duplicates"],
        checks["summary"],
    )
    logger.info(
        "Data checks: %(images)d images, %(label_issues)d label issues (out-of-fold accuracy "
        "%(out_of_fold_accuracy).3f), %(exact_duplicates)d exact and %(near_duplicates)d near "
        "duplicates, %(leaking_pairs)d leaking pairs, imbalance ratio %(imbalance_ratio)s.",
        summary,
    )
    report = markdown_report(summary, issues, duplicates, checks["class_balance"])
    balance = {**checks["class_balance"], "summary": summary}
    return (
        issues,
        duplicates,
        balance,
        report,
        suspects_grid(issues, sets, data_checks.suspects_grid),
    )


def suspects_grid(issues: pd.DataFrame, sets: dict[str, dict[str, Any]], count: int) -> Figure:
    """The ``count`` most suspicious images, titled given -> suggested (score)."""
    top = issues.head(count)
    if top.empty:
        return message_figure("No images to rank")
    where = {(name, f): i for name, s in sets.items() for i, f in enumerate(s["files"])}
    images = [
        read_rows(sets[r.split]["images"], [where[r.split, r.file]])[0] for r in top.itertuples()
    ]
    titles = [f"{r.given} -> {r.suggested} ({r.score:.3f})" for r in top.itertuples()]
    return image_grid(images, titles, f"{len(top)} most suspicious labels (given -> suggested)")
