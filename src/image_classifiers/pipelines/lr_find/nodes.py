"""The node that runs the LR range test (``core.training.find_learning_rate``) and draws its
curve."""

from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure

from image_classifiers.core.params import LrFindParams, TrainingParams
from image_classifiers.core.training import check_fits
from image_classifiers.core.training import find_learning_rate as range_test


def find_learning_rate(
    model: keras.Model, train_set: dict[str, Any], training: TrainingParams, lr_find: LrFindParams
) -> tuple[dict[str, Any], Figure]:
    """The range test on the target's freshly built model and training split, with its
    training recipe (optimizer, loss, batch size, augmentation, MixUp/CutMix): the report
    (``suggested_learning_rate``, ``method``, the curve) and the loss-against-rate plot."""
    check_fits(model, "train_set", train_set)
    found = range_test(model, train_set, training, lr_find)
    return found, plot_lr_find(found, model.name)


def plot_lr_find(found: dict[str, Any], name: str) -> Figure:
    """Each batch's loss and its moving average against the rate (log scale), the
    suggestion marked."""
    rates, smoothed = np.array(found["learning_rates"]), np.array(found["smoothed_losses"])
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(rates, found["losses"], color="tab:blue", alpha=0.3, label="batch loss")
    axes.plot(rates, smoothed, color="tab:blue", label="smoothed loss")
    suggested = found["suggested_learning_rate"]
    axes.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:.3g}")
    losses = np.array(found["losses"])
    if np.isfinite(losses).any():  # a diverging tail would flatten the interesting part
        low, start = np.nanmin(losses[np.isfinite(losses)]), smoothed[0]
        axes.set_ylim(low - 0.05 * (start - low), start + 0.5 * (start - low))
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title(
        f"LR range test of {name}: {found['steps_run']} batches\nsuggested: {found['method']}",
        fontsize=9,
    )
    axes.legend()
    return figure
