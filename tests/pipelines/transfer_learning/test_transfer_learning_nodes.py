"""Nodes of transfer_learning: per-phase parameters, the two phases, histories, the plot."""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import pytest
from pydantic import ValidationError
from transfer_helpers import image_set, tiny_base

from image_classifiers.core.models.transfer import pretrained_base, unfreeze_top_layers
from image_classifiers.core.params import AugmentationParams, TrainingParams, TransferParams
from image_classifiers.core.training import fit_model
from image_classifiers.pipelines.model_training.nodes import plot_training_curves
from image_classifiers.pipelines.transfer_learning import nodes
from image_classifiers.tracking import MlflowEpochMetrics

TRAINING = TrainingParams(epochs=100, batch_size=8, learning_rate=0.001, seed=7)


def _transfer(base: str, **phases) -> TransferParams:
    return TransferParams(**_transfer_dict(base, **phases))


def _transfer_dict(base: str, **phases) -> dict:
    return {
        "base": base,
        "weights": None,
        "pooling": "avg",
        "dense_units": None,
        "dropout": 0.0,
        "feature_extraction": {"epochs": 4, "learning_rate": 0.01},
        "fine_tuning": {"unfreeze_top_k": 2, "epochs": 2, "learning_rate": 0.001},
        **phases,
    }


def _weights(layer: keras.layers.Layer) -> dict[str, np.ndarray]:
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in layer.weights}


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {path for path in before if not np.array_equal(before[path], after[path])}


# ---- parameters --------------------------------------------------------------------------
def test_phase_parameters_override_the_shared_training_ones():
    transfer = _transfer("vgg16")
    extraction = transfer.phase_training(TRAINING, "feature_extraction")
    assert extraction == TRAINING.model_copy(update={"epochs": 4, "learning_rate": 0.01})
    tuning = transfer.phase_training(TRAINING, "fine_tuning")
    assert tuning == TRAINING.model_copy(update={"epochs": 2, "learning_rate": 0.001})
    assert TRAINING.epochs == 100  # the shared parameters are left alone


def test_a_misspelt_phase_key_is_an_error_not_ignored():
    with pytest.raises(ValidationError, match=r"fine_tuning\n  Value error, unknown key 'lea"):
        _transfer("vgg16", fine_tuning={"unfreeze_top_k": 4, "learning_rat": 1e-5})


def test_unknown_transfer_keys_are_refused():
    with pytest.raises(ValidationError, match=r"unknown key 'bas' \(did you mean 'base'\?\)"):
        TransferParams(bas="vgg16")


# ---- histories and plot -------------------------------------------------------------------
def test_histories_of_both_phases_number_epochs_on_and_name_the_phase():
    first = nodes.label_phase({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}, "feature_extraction", 1)
    second = nodes.label_phase({"loss": [1.0], "lr": [1e-5]}, "fine_tuning", 3)
    merged = nodes.merge_histories(first, second)
    assert merged["epoch"] == [1, 2, 3]
    assert merged["phase"] == ["feature_extraction", "feature_extraction", "fine_tuning"]
    assert merged["loss"] == [3.0, 2.0, 1.0]
    assert merged["val_loss"][:2] == [3.5, 2.5] and math.isnan(merged["val_loss"][2])
    assert math.isnan(merged["lr"][0]) and merged["lr"][2] == 1e-5


def test_training_curves_mark_where_fine_tuning_starts():
    history = nodes.merge_histories(
        nodes.label_phase({"loss": [3, 2], "val_loss": [3, 2], "accuracy": [0.5, 0.6],
                           "val_accuracy": [0.5, 0.6]}, "feature_extraction", 1),
        nodes.label_phase({"loss": [1], "val_loss": [1.5], "accuracy": [0.7],
                           "val_accuracy": [0.65]}, "fine_tuning", 3),
    )  # fmt: skip
    figure = plot_training_curves(history)
    assert len(figure.axes) == 2
    for axes in figure.axes:
        boundaries = [line for line in axes.get_lines() if line.get_label() == "Fine-tuning starts"]
        assert len(boundaries) == 1 and list(boundaries[0].get_xdata()) == [2.5, 2.5]


# ---- the two phases ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("weights", ["random", "local file"])
def test_feature_extraction_trains_the_head_only_and_the_loss_falls(
    tiny_base_registered, tmp_path, weights
):
    train, validation = image_set(16, 0), image_set(8, 1)
    transfer = _transfer_dict("tiny")
    if weights == "local file":
        keras.utils.set_random_seed(11)
        pretrained = tiny_base(input_shape=(32, 32, 3))
        transfer["weights"] = str(tmp_path / "tiny_notop.weights.h5")
        pretrained.save_weights(transfer["weights"])
    transfer = TransferParams(**transfer)
    augmentation = AugmentationParams(horizontal_flip=True)
    model = nodes.build_transfer_model(train, transfer, augmentation, TRAINING)
    if weights == "local file":
        for got, want in zip(
            pretrained_base(model).get_weights(), pretrained.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    base_before = _weights(pretrained_base(model))
    head_before = _weights(model.get_layer("predictions"))

    model, history = nodes.train_feature_extractor(model, train, validation, TRAINING, transfer)

    assert _changed(base_before, _weights(pretrained_base(model))) == set()  # BN stats too
    assert _changed(head_before, _weights(model.get_layer("predictions")))
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["phase"] == ["feature_extraction"] * 4
    assert history["learning_rate"] == pytest.approx([0.01] * 4)
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.slow
def test_fine_tuning_trains_the_top_layers_and_leaves_batch_norm_alone(tiny_base_registered):
    train = image_set(16, 0)
    model = nodes.build_transfer_model(train, _transfer("tiny"), None, TRAINING)
    base = pretrained_base(model)
    assert unfreeze_top_layers(model, 3) == ["dropout", "conv2", "relu2"]
    before = {name: _weights(base.get_layer(name)) for name in ("conv1", "bn1", "conv2", "bn2")}

    fit_model(model, train, image_set(8, 1), TRAINING.model_copy(update={"epochs": 2}))

    after = {name: _weights(base.get_layer(name)) for name in before}
    assert _changed(before["conv2"], after["conv2"]) == {"conv2/kernel", "conv2/bias"}
    for frozen in ("conv1", "bn1", "bn2"):  # bn2 sits inside the top 3 but stays frozen
        assert _changed(before[frozen], after[frozen]) == set(), frozen


def _fake_fit(val_loss: float, new_value: float):
    def fit(model, train_set, validation_set, training, initial_epoch=0, *, callbacks=()):
        assert initial_epoch == 2 and training.learning_rate == 1e-5
        assert [type(callback) for callback in callbacks] == [MlflowEpochMetrics]
        for weight in model.get_layer("predictions").weights:
            weight.assign(np.full(weight.shape, new_value, dtype="float32"))
        return model, {"loss": [0.4], "val_loss": [val_loss], "learning_rate": [1e-5]}

    return fit


@pytest.mark.parametrize(("val_loss", "kept"), [(0.3, 9.0), (0.9, None)])
def test_fine_tuning_keeps_the_better_of_the_two_phases(
    tiny_base_registered, monkeypatch, caplog, val_loss, kept
):
    train = image_set(4, 0)
    transfer = _transfer("tiny", fine_tuning={"unfreeze_top_k": 1, "epochs": 1,
                                               "learning_rate": 1e-5})  # fmt: skip
    model = nodes.build_transfer_model(train, transfer, None, TRAINING)
    phase_one = nodes.label_phase(
        {"loss": [0.8, 0.6], "val_loss": [0.7, 0.5], "learning_rate": [0.01, 0.01]},
        "feature_extraction",
        1,
    )
    head_before = _weights(model.get_layer("predictions"))
    monkeypatch.setattr(nodes, "fit_model", _fake_fit(val_loss, 9.0))

    with caplog.at_level(logging.WARNING):
        model, history = nodes.fine_tune_model(
            model, train, image_set(4, 1), TRAINING, transfer, phase_one
        )

    head_after = _weights(model.get_layer("predictions"))
    if kept is None:  # fine-tuning was worse: the feature-extraction weights come back
        assert _changed(head_before, head_after) == set()
        assert "keeping the feature-extraction weights" in caplog.text
    else:
        assert all((value == kept).all() for value in head_after.values())
    assert history["epoch"] == [1, 2, 3]
    assert history["phase"] == ["feature_extraction"] * 2 + ["fine_tuning"]
    assert history["learning_rate"] == [0.01, 0.01, 1e-5]
