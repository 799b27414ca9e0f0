"""compare_architectures nodes: per-model summary, comparison table, plot."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure

from image_classifiers.core.params import ModelOptions
from image_classifiers.pipelines.compare_architectures.nodes import (
    COMPARISON_COLUMNS,
    compare_architectures,
    plot_architecture_comparison,
    summarise_training,
)


class FakeModel:
    def __init__(self, params: int):
        self._params = params

    def count_params(self) -> int:
        return self._params


OPTIONS = ModelOptions(architecture="simple_convnet", dropout=0.5)


def summary(accuracy: float, params: int = 1000, seconds: tuple = (3.0, 1.0, 1.2)) -> dict:
    row, train_seconds = summarise_training(
        FakeModel(params),
        {"test_accuracy": accuracy, "test_loss": 1 - accuracy, "test_f1": 0.5},
        {"loss": [0.7] * len(seconds), "epoch_seconds": list(seconds)},
        OPTIONS,
    )
    assert train_seconds == row["train_seconds"]  # also logged to the model's run
    return row


def test_summary_reads_size_scores_and_timings():
    row = summary(0.8, params=991_041, seconds=(10.0, 2.0, 3.0, 2.5))
    assert row == {
        "architecture": "simple_convnet",
        "params": 991_041,
        "test_accuracy": 0.8,
        "test_loss": pytest.approx(0.2),
        "train_seconds": 17.5,
        # The median leaves out the first epoch's compilation.
        "epoch_seconds": 2.75,
        "epochs": 4,
    }


def test_summary_of_an_untrained_model_has_no_epoch_time():
    row = summary(0.5, seconds=())
    assert row["epochs"] == 0 and row["train_seconds"] == 0 and math.isnan(row["epoch_seconds"])


def test_summary_says_which_test_metrics_are_missing():
    with pytest.raises(ValueError, match=r"\['test_loss'\].*evaluate_model"):
        summarise_training(FakeModel(1), {"test_accuracy": 0.9}, {}, OPTIONS)


def test_comparison_has_one_row_per_model_best_first():
    table = compare_architectures(small=summary(0.7, 100), big=summary(0.9, 10_000))
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table["model"]) == ["big", "small"]
    assert list(table["params"]) == [10_000, 100]


def test_plot_labels_every_model(tmp_path):
    table = compare_architectures(a=summary(0.7, 100), b=summary(0.9, 10_000))
    figure = plot_architecture_comparison(table)
    assert isinstance(figure, Figure)
    size_axes, time_axes = figure.axes
    assert size_axes.get_xscale() == "log"
    assert {text.get_text() for text in size_axes.texts} == {"a", "b"}
    assert time_axes.get_xlabel() == "Training time (s)"
    figure.savefig(tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_plot_axes_are_linear_within_an_order_of_magnitude():
    figure = plot_architecture_comparison(pd.DataFrame([{**summary(0.5), "model": "only"}]))
    assert figure.axes[0].get_xscale() == "linear"
    table = compare_architectures(a=summary(0.7, 300_000), b=summary(0.9, 990_000))
    size_axes, _ = plot_architecture_comparison(table).axes
    assert size_axes.get_xscale() == "linear"
