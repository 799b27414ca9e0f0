"""Nodes of the cnn_cifar10 over-fitting study: one summary per variant, one comparison."""

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger(__name__)

COMPARISON_COLUMNS = ("variant", "test_accuracy", "test_loss", "train_accuracy", "val_accuracy")
COMPARISON_COLUMNS += ("overfitting_gap", "best_epoch", "epochs")
_CURVES = ("accuracy", "val_accuracy", "loss", "val_loss")
_BARS = {  # column: legend label
    "train_accuracy": "training (last epoch)",
    "val_accuracy": "validation (last epoch)",
    "test_accuracy": "test (best epoch's weights)",
}


def summarise_variant(
    metrics: dict[str, Any], training_history: dict[str, list[float]]
) -> dict[str, Any]:
    """What the study compares about one variant: test accuracy and loss, the last epoch's
    accuracies and their difference (``overfitting_gap``: what the remedies should shrink),
    the epoch of the lowest validation loss (whose weights were kept), epochs and curves."""
    missing = [key for key in ("test_accuracy", "test_loss") if key not in metrics]
    missing += [key for key in _CURVES if key not in training_history]
    if missing:
        raise ValueError(f"The variant's metrics or history lack {missing}: re-run its training.")
    epochs = len(training_history["loss"])
    last = {key: float(training_history[key][-1]) if epochs else math.nan for key in _CURVES}
    best = int(np.nanargmin(training_history["val_loss"])) + 1 if epochs else 0
    return {
        "test_accuracy": float(metrics["test_accuracy"]),
        "test_loss": float(metrics["test_loss"]),
        "train_accuracy": last["accuracy"],
        "val_accuracy": last["val_accuracy"],
        "overfitting_gap": last["accuracy"] - last["val_accuracy"],
        "best_epoch": best,
        "epochs": epochs,
        "curves": {key: [float(v) for v in training_history[key]] for key in _CURVES},
    }


def compare_variants(**summaries: dict[str, Any]) -> tuple[pd.DataFrame, Figure]:
    """One row per variant (``summaries`` by name), in the study's order, and a figure:
    validation loss per epoch (over-fitting shows as a rising curve) and the accuracies."""
    rows = [{"variant": name, **summary} for name, summary in summaries.items()]
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))  # the curves left out
    logger.info("Over-fitting study:\n%s", table.to_string(index=False, float_format="%.4f"))
    return table, plot_variants(summaries, table)


def plot_variants(summaries: dict[str, dict[str, Any]], table: pd.DataFrame) -> Figure:
    """Validation loss per epoch for each variant; final train/validation and test accuracy."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    curves = figure.add_subplot(1, 2, 1)
    for name, summary in summaries.items():
        losses = summary["curves"]["val_loss"]
        curves.plot(np.arange(1, len(losses) + 1), losses, marker="o", markersize=3, label=name)
    curves.set(title="Validation loss per epoch", xlabel="Epoch", ylabel="Validation loss")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.legend()
    curves.grid(alpha=0.3)

    bars = figure.add_subplot(1, 2, 2)
    positions = np.arange(len(table))
    width = 0.27
    for offset, (column, label) in enumerate(_BARS.items()):
        bars.bar(positions + (offset - 1) * width, table[column], width, label=label)
    bars.set_xticks(positions, table["variant"], rotation=15)
    title = "Accuracy per variant: the gap between training and validation is over-fitting"
    bars.set(ylim=(0, 1), ylabel="Accuracy", title=title)
    bars.legend(fontsize=8)
    bars.grid(alpha=0.3, axis="y")
    figure.suptitle(f"CIFAR-10 over-fitting study: {len(table)} variants on the same data")
    return figure
