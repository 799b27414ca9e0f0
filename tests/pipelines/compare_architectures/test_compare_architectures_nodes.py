"""compare_architectures nodes: the model list, training each model, per-model summary,
comparison table, plot."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError

from image_classifiers.params import CompareArchitecturesParams
from image_classifiers.pipelines.compare_architectures.nodes import (
    COMPARISON_COLUMNS,
    compare_architectures,
    plot_architecture_comparison,
    summarise_training,
    train_architectures,
)


class FakeModel:
    def __init__(self, params: int):
        self._params = params

    def count_params(self) -> int:
        return self._params


def summary(accuracy: float, params: int = 1000, seconds: tuple = (3.0, 1.0, 1.2)) -> dict:
    return summarise_training(
        FakeModel(params),
        {"test_accuracy": accuracy, "test_loss": 1 - accuracy, "test_f1": 0.5},
        {"loss": [0.7] * len(seconds), "epoch_seconds": list(seconds)},
        {"architecture": "simple_convnet", "dropout": 0.5},
    )


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
        summarise_training(FakeModel(1), {"test_accuracy": 0.9}, {}, {"architecture": "x"})


def test_comparison_has_one_row_per_model_best_first():
    table = compare_architectures({"small": summary(0.7, 100), "big": summary(0.9, 10_000)})
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table["model"]) == ["big", "small"]
    assert list(table["params"]) == [10_000, 100]


def test_comparison_needs_at_least_one_model():
    with pytest.raises(ValueError, match=r"compare_architectures\.models"):
        compare_architectures({})


def test_plot_labels_every_model(tmp_path):
    table = compare_architectures({"a": summary(0.7, 100), "b": summary(0.9, 10_000)})
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
    table = compare_architectures({"a": summary(0.7, 300_000), "b": summary(0.9, 990_000)})
    size_axes, _ = plot_architecture_comparison(table).axes
    assert size_axes.get_xscale() == "linear"


MODELS = {
    "tiny_a": {"architecture": "simple_convnet", "filters": [4], "dropout": 0.0},
    "tiny_b": {"architecture": "simple_convnet", "filters": [4, 4], "dropout": 0.0},
}


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        (["tiny_a", "nope"], r"compare_architectures\.models lists \['nope'\].*choose from: "),
        (["zz"], "choose from: tiny_a, tiny_b, or add them to the models section"),
    ],
)
def test_an_unknown_model_is_named_with_the_models_to_choose_from(listed, message):
    with pytest.raises(ValueError, match=message):
        CompareArchitecturesParams(models=listed).listed_options(MODELS)


def test_invalid_options_of_a_listed_model_name_the_model():
    models = {"tiny_a": {"architecture": "simple_convnet", "dropot": 0.5}}
    with pytest.raises(ValueError, match=r"(?s)models\.tiny_a .*did you mean 'dropout'"):
        CompareArchitecturesParams(models=["tiny_a"]).listed_options(models)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", r"compare_architectures\.models is empty; choose from: tiny_a, tiny_b \(on the"),
        (None, "compare_architectures.models is empty; choose from: tiny_a, tiny_b"),
        ([], "compare_architectures.models is empty"),
        ("tiny_a tiny_b tiny_a", r"lists \['tiny_a'\] more than once.*choose from: tiny_a, tiny_b"),
    ],
)
def test_an_empty_or_repeating_list_is_rejected_with_the_models_to_choose_from(given, message):
    compare = CompareArchitecturesParams.coerce({"models": given})
    with pytest.raises(ValueError, match=message):
        compare.listed_options(MODELS)


def test_a_model_list_must_be_names():
    with pytest.raises(ValidationError, match=r"models\.0\n  Input should be a valid string"):
        CompareArchitecturesParams.coerce({"models": [1]})


def test_the_list_is_given_space_separated_and_kept_in_order():
    compare = CompareArchitecturesParams.coerce({"models": "tiny_b tiny_a"})
    assert compare.models == ["tiny_b", "tiny_a"]
    assert list(compare.listed_options(MODELS)) == ["tiny_b", "tiny_a"]


@pytest.mark.slow
def test_train_architectures_trains_each_listed_model_in_order_without_tracking():
    from tiny_project import image_set

    assert mlflow.active_run() is None
    trained, reports, figures, summaries = train_architectures(
        compare={"models": ["tiny_b", "tiny_a"]},
        models=MODELS,
        train_set=image_set(8, seed=0, size=16),
        validation_set=image_set(4, seed=1, size=16),
        test_set=image_set(4, seed=2, size=16),
        training={"epochs": 1, "batch_size": 4},
        augmentation=None,
        evaluation={"batch_size": 4, "misclassified_grid": 2},
        inspection={"feature_map_layers": 1, "grad_cam_grid": 2, "batch_size": 4},
    )
    assert list(trained) == list(summaries) == ["tiny_b", "tiny_a"]
    assert trained["tiny_b"].count_params() != trained["tiny_a"].count_params()
    assert set(reports) == {f"{m}/{r}" for m in MODELS for r in ("metrics", "training_history")}
    plots = ("training_curves", "confusion_matrix", "misclassified", "feature_maps", "grad_cam")
    assert set(figures) == {f"{m}/{p}" for m in MODELS for p in plots}
    assert all(isinstance(figure, Figure) for figure in figures.values())
    assert summaries["tiny_a"]["epochs"] == 1
    assert summaries["tiny_a"]["test_accuracy"] == reports["tiny_a/metrics"]["test_accuracy"]
    assert mlflow.active_run() is None  # outside kedro run nothing is tracked
