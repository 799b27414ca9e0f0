"""Nodes of compare_architectures: one summary per trained model, one comparison of all."""

import logging
import math
import statistics
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter, ScalarFormatter

from image_classifiers.core.params import ModelOptions

logger = logging.getLogger(__name__)

#: Columns of data/08_reporting/architecture_comparison.csv, in order.
COMPARISON_COLUMNS = ("model", "architecture", "params", "test_accuracy", "test_loss")
COMPARISON_COLUMNS += ("train_seconds", "epoch_seconds", "epochs")


def summarise_training(
    model: Any,
    metrics: dict[str, Any],
    training_history: dict[str, list[float]],
    model_options: ModelOptions,
) -> tuple[dict[str, Any], float]:
    """The comparison's columns but ``model`` for one trained model (``epoch_seconds``: the
    median, which leaves out the first epoch's compilation) and ``train_seconds`` for MLflow."""
    missing = [key for key in ("test_accuracy", "test_loss") if key not in metrics]
    if missing:
        raise ValueError(f"The test metrics lack {missing}: re-run evaluate_model.")
    epoch_seconds = [float(s) for s in training_history.get("epoch_seconds") or []]
    summary = {
        "architecture": model_options.architecture,
        "params": int(model.count_params()),
        "test_accuracy": float(metrics["test_accuracy"]),
        "test_loss": float(metrics["test_loss"]),
        "train_seconds": round(sum(epoch_seconds), 3),
        "epoch_seconds": round(statistics.median(epoch_seconds), 3) if epoch_seconds else math.nan,
        "epochs": len(epoch_seconds),
    }
    return summary, summary["train_seconds"]


def compare_architectures(**summaries: dict[str, Any]) -> pd.DataFrame:
    """One row per model (``summaries`` by model name), best test accuracy first."""
    rows = [{**summary, "model": name} for name, summary in summaries.items()]
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    table = table.sort_values(
        ["test_accuracy", "test_loss"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    logger.info("Architectures compared:\n%s", table.to_string(index=False))
    return table


def plot_architecture_comparison(comparison: pd.DataFrame) -> Figure:
    """Test accuracy against model size and against training time, one labelled dot per model."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    panels = (
        ("params", "Parameters", "Accuracy vs model size", EngFormatter(sep=" ")),
        ("train_seconds", "Training time (s)", "Accuracy vs training time", ScalarFormatter()),
    )
    for position, (column, label, title, formatter) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.scatter(comparison[column], comparison["test_accuracy"], s=40, color="tab:blue")
        for row in comparison.itertuples():
            axes.annotate(
                row.model,
                (getattr(row, column), row.test_accuracy),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=9,
            )
        values = comparison[column]
        if (values > 0).all() and values.max() >= 10 * values.min():
            # Model sizes (and times) can span orders of magnitude.
            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.xaxis.set_major_formatter(formatter)
        axes.margins(x=0.2, y=0.15)  # room for the labels at the edges
        axes.set(xlabel=label, ylabel="Test accuracy", title=title)
        axes.grid(alpha=0.3)
    figure.suptitle(f"{len(comparison)} models on the same data")
    return figure
