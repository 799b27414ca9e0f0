"""Nodes of model_training: model building, metrics on known predictions, figures."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError

from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.datasets.atomic import AtomicJSONDataset
from image_classifiers.pipelines.model_training import nodes
from image_classifiers.pipelines.model_training.nodes import (
    build_model,
    calibrate_model,
    classification_metrics,
    evaluate_model,
    plot_training_curves,
    train_model,
    write_model_card,
)
from image_classifiers.tracking import MlflowEpochMetrics

# Uniform grey images whose pixel value v makes the "brightness model" below predict
# P(dog) = v / 255 exactly: labels 0 0 0 1 1 1.
PIXELS = np.array([25, 102, 153, 178, 76, 229])
LABELS = np.array([0, 0, 0, 1, 1, 1], dtype=np.int32)


def brightness_model(size: int = 4) -> keras.Model:
    """P(dog) = mean pixel / 255: a classifier whose outputs are known in advance."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(1 / 3)
    )(x)
    return keras.Model(inputs, outputs)


def grey_set(pixels: np.ndarray, labels: np.ndarray, size: int = 4) -> dict:
    images = np.broadcast_to(pixels[:, None, None, None], (len(pixels), size, size, 3))
    return {
        "images": np.ascontiguousarray(images, dtype=np.uint8),
        "labels": labels,
        "classes": ["cat", "dog"],
        "files": [f"img{i}.jpg" for i in range(len(pixels))],
    }


def test_evaluate_model_on_known_predictions():
    metrics, confusion, misclassified, reliability, losses = evaluate_model(
        brightness_model(),
        grey_set(PIXELS, LABELS),
        EvaluationParams(threshold=0.5, misclassified_grid=16, batch_size=4),
    )
    p = PIXELS / 255
    # Predicted dog above 0.5: 0 0 1 1 0 1 -> one false positive (153), one false negative (76).
    assert metrics["confusion_matrix"] == [[2, 1], [1, 2]]
    assert metrics["test_accuracy"] == pytest.approx(4 / 6)
    assert metrics["test_precision"] == pytest.approx(2 / 3)
    assert metrics["test_recall"] == pytest.approx(2 / 3)
    assert metrics["test_f1"] == pytest.approx(2 / 3)
    # Of the 9 (dog, cat) pairs, the dog scores higher in 7 (76 beats only 25).
    assert metrics["test_roc_auc"] == pytest.approx(7 / 9)
    expected_loss = -np.mean(np.log(np.where(LABELS == 1, p, 1 - p)))
    assert metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["num_test_images"] == 6 and metrics["num_misclassified"] == 2
    assert isinstance(confusion, Figure) and isinstance(misclassified, Figure)
    # Drawn from the top losses: 76 (a dog at P(dog) 0.30, loss -log 0.30), then 153.
    titles = [axes.get_title() for axes in misclassified.axes]
    assert titles == ["true: dog\npred: cat (0.70)", "true: cat\npred: dog (0.60)"]
    assert losses["file"].tolist() == ["img4.jpg", "img2.jpg"]
    assert losses["true_class"].tolist() == ["dog", "cat"]
    assert losses["predicted_class"].tolist() == ["cat", "dog"]
    np.testing.assert_allclose(losses["probability"], [1 - p[4], p[2]], rtol=1e-5)
    np.testing.assert_allclose(losses["loss"], -np.log([p[4], 1 - p[2]]), rtol=1e-5)
    # Per class: cats 2 of 3 found, 2 of 3 "cat" right; the same for dogs.
    assert metrics["per_class"]["cat"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert sum(row["support"] for row in metrics["per_class"].values()) == 6
    assert metrics["most_confused"] == [
        {"a": "cat", "b": "dog", "a_as_b": 1, "b_as_a": 1, "total": 2}
    ]
    # No calibration given: temperature 1, the same ECE and Brier before and after.
    assert metrics["temperature"] == 1.0
    confidence = np.maximum(p, 1 - p)
    assert metrics["test_brier"] == pytest.approx(
        np.mean(2 * (np.where(LABELS == 1, p, 1 - p) - 1) ** 2), rel=1e-5
    )
    assert metrics["test_expected_calibration_error"] == pytest.approx(
        metrics["test_expected_calibration_error_calibrated"]
    )
    assert 0 < metrics["test_expected_calibration_error"] <= np.max(confidence)
    json.dumps(metrics, allow_nan=False)
    assert [line.get_label() for line in reliability.axes[0].get_lines()][1].startswith("As pred")


def left_half_model(size: int = 4) -> keras.Model:
    """P(dog) = mean of the left half's pixels / 255: its mirror image scores the right half."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(1 / 3)
    )(x)
    return keras.Model(inputs, outputs)


def test_evaluation_averages_over_mirror_images_when_test_time_flip_is_on():
    # Left half v, right half 255 - v: plain P(dog) = v / 255, mirrored 1 - v / 255, so the
    # flip average is 0.5 for every image.
    test_set = grey_set(PIXELS, LABELS)
    test_set["images"][:, :, 2:] = 255 - test_set["images"][:, :, 2:]
    evaluation = EvaluationParams(threshold=0.5, misclassified_grid=4, batch_size=4)
    plain, *_ = evaluate_model(left_half_model(), test_set, evaluation)
    flipped, *_ = evaluate_model(
        left_half_model(), test_set, evaluation.model_copy(update={"test_time_flip": True})
    )
    p = PIXELS / 255
    assert plain["test_loss"] == pytest.approx(
        -np.mean(np.log(np.where(LABELS == 1, p, 1 - p))), rel=1e-5
    )
    assert flipped["test_loss"] == pytest.approx(-np.log(0.5), rel=1e-5)
    assert flipped["test_roc_auc"] == pytest.approx(0.5)


def test_threshold_moves_the_decision():
    metrics, *_ = evaluate_model(
        brightness_model(), grey_set(PIXELS, LABELS), EvaluationParams(threshold=0.65)
    )
    # Now 153 (0.60) is a cat and 178 (0.70) still a dog: only 76 is wrong.
    assert metrics["confusion_matrix"] == [[3, 0], [1, 2]]
    assert metrics["test_precision"] == pytest.approx(1.0)
    assert metrics["test_roc_auc"] == pytest.approx(7 / 9)  # AUC ignores the threshold


def test_misclassified_grid_is_capped_and_says_when_nothing_is_wrong():
    _, _, grid, _, losses = evaluate_model(
        brightness_model(), grey_set(PIXELS, LABELS), EvaluationParams(misclassified_grid=1)
    )
    assert len(losses) == 2  # the CSV lists every mistake, the grid the first ones
    assert len(grid.axes) == 1
    assert grid.axes[0].get_title().startswith("true: dog")  # the most confident mistake
    perfect = np.array([0, 0, 0, 1, 1, 1], dtype=np.int32)
    _, _, empty, _, none = evaluate_model(
        brightness_model(),
        grey_set(np.array([10, 20, 30, 200, 220, 240]), perfect),
        EvaluationParams(),
    )
    assert empty.axes == [] and "No misclassified" in empty.texts[0].get_text()
    assert none.empty and list(none.columns) == [
        "file",
        "true_class",
        "predicted_class",
        "probability",
        "loss",
    ]


def test_evaluate_model_rejects_images_of_another_size():
    with pytest.raises(ValueError, match="decode the test set"):
        evaluate_model(brightness_model(size=5), grey_set(PIXELS, LABELS), EvaluationParams())


def test_multiclass_metrics_are_macro_averages():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.7, 0.2],
            [0.5, 0.25, 0.25],  # a 1 taken for a 0
            [0.1, 0.2, 0.7],
            [0.2, 0.1, 0.7],
        ]
    )
    predictions = probabilities.argmax(axis=1)
    metrics = classification_metrics(labels, probabilities, predictions, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    # precision per class 2/3, 1, 1; recall 1, 1/2, 1; F1 0.8, 2/3, 1.
    assert metrics["test_precision"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert metrics["test_recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["test_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    # One-vs-rest AUC, pairs (positive, negative) ranked right: a 8/8; b 7/8 (its 0.25
    # loses to the 0.3 of an "a"); c 8/8.
    assert metrics["test_roc_auc"] == pytest.approx((1 + 7 / 8 + 1) / 3)
    assert metrics["test_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.7, 0.25, 0.7, 0.7])))


def test_auc_is_none_when_the_test_set_has_one_class():
    labels = np.zeros(3, dtype=np.int32)
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2]])
    metrics = classification_metrics(labels, probabilities, np.array([0, 1, 0]), ["x", "y"])
    assert metrics["test_roc_auc"] is None
    assert metrics["test_accuracy"] == pytest.approx(2 / 3)


def test_a_class_without_test_images_is_named_and_null_in_metrics_json(tmp_path, caplog):
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.7, 0.2]])
    metrics = classification_metrics(np.array([0, 0, 1]), probabilities, np.array([0, 0, 1]),
                                     ["a", "b", "rare"])  # fmt: skip
    assert "no images of classes ['rare']" in caplog.text
    path = tmp_path / "metrics.json"
    AtomicJSONDataset(filepath=str(path)).save(metrics)  # the catalog's metrics.json dataset
    assert '"test_roc_auc": null' in path.read_text()
    assert "NaN" not in path.read_text()


def test_training_curves_show_accuracy_and_loss():
    history = {
        "loss": [0.7, 0.5, 0.4],
        "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [0.6, 0.55, 0.58],
        "val_accuracy": [0.6, 0.7, 0.68],
    }
    figure = plot_training_curves(history)
    assert isinstance(figure, Figure)
    accuracy, loss = figure.axes
    assert "accuracy" in accuracy.get_title() and "loss" in loss.get_title()
    train_line, validation_line = loss.get_lines()[:2]
    np.testing.assert_allclose(train_line.get_ydata(), history["loss"])
    np.testing.assert_allclose(validation_line.get_ydata(), history["val_loss"])
    assert "Best epoch (2)" in [text.get_text() for text in loss.get_legend().get_texts()]
    empty = plot_training_curves({"loss": [], "val_loss": []})
    assert empty.axes == [] and "No epochs" in empty.texts[0].get_text()


def test_build_model_reads_shape_classes_and_options():
    train_set = grey_set(PIXELS, LABELS, size=16)
    model = build_model(
        train_set,
        ModelOptions(architecture="simple_convnet", filters=[4, 4], dropout=0.1),
        AugmentationParams(horizontal_flip=True),
        TrainingParams(seed=1, mixed_precision=True),
    )
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 1)
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    assert keras.config.dtype_policy().name == "float32"


def test_model_options_need_a_known_architecture():
    # Kedro validates the typed group before build_model runs.
    with pytest.raises(ValidationError, match="architecture\n  Field required"):
        ModelOptions(dropout=0.5)
    with pytest.raises(ValidationError, match="unknown architecture 'nope'; choose one of"):
        ModelOptions(architecture="nope")


def test_metrics_are_json_serialisable():
    metrics = classification_metrics(
        LABELS,
        np.stack([1 - PIXELS / 255, PIXELS / 255], 1),
        (PIXELS > 127).astype(int),
        ["a", "b"],
    )
    restored = json.loads(json.dumps(metrics))
    assert restored["confusion_matrix"] == metrics["confusion_matrix"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in restored.values())


def test_train_model_sends_live_metrics_to_mlflow(monkeypatch):
    seen = {}

    def fit(model, train_set, validation_set, training, initial_epoch=0, *, callbacks=()):
        seen["callbacks"] = callbacks
        return model, {}

    monkeypatch.setattr(nodes, "fit_model", fit)
    train_model(brightness_model(), {}, {}, TrainingParams())
    assert [type(callback) for callback in seen["callbacks"]] == [MlflowEpochMetrics]


def test_calibration_fits_on_the_validation_split_and_is_reported_on_the_test_split():
    # The brightness model says P(dog) = 230/255 or 25/255 (0.90 sure), but is right 3 times
    # in 4: too sure.
    pixels = np.array([230, 230, 230, 230, 25, 25, 25, 25])
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1], dtype=np.int32)
    split = grey_set(pixels, labels)
    evaluation = EvaluationParams(batch_size=4)
    calibration = calibrate_model(brightness_model(), split, evaluation)
    assert calibration["calibrated"] and calibration["temperature"] > 1
    assert calibration["validation_loss_calibrated"] < calibration["validation_loss"]
    metrics, *_, reliability, _ = evaluate_model(brightness_model(), split, evaluation, calibration)
    assert metrics["temperature"] == calibration["temperature"]
    # Fitted on these very images: confidence 0.75 after, as often right: ECE 0.
    assert metrics["test_expected_calibration_error_calibrated"] == pytest.approx(0, abs=1e-3)
    assert metrics["test_expected_calibration_error"] == pytest.approx(230 / 255 - 0.75, rel=1e-4)
    assert len(reliability.axes[0].get_lines()) == 3  # diagonal, before, after
    off = calibrate_model(
        brightness_model(), split, evaluation.model_copy(update={"calibrate": False})
    )
    assert off == {"temperature": 1.0, "calibrated": False}


def test_model_card_node_reads_the_report_and_the_splits():
    split = grey_set(PIXELS, LABELS)
    metrics, _, _, _, losses = evaluate_model(brightness_model(), split, EvaluationParams())
    card = write_model_card(
        model=brightness_model(),
        metrics=metrics,
        calibration={"temperature": 1.0, "calibrated": False},
        top_losses=losses,
        training_history={"loss": [0.5, 0.4]},
        train_set=split,
        validation_set=split,
        test_set=split,
        training=TrainingParams(),
        model_summary="Total params: 3",
    )
    assert "| test | 6 | 3 | 3 |" in card and "trained 2 epochs" in card
    assert "`img4.jpg`: dog predicted cat" in card and "Total params: 3" in card
    assert "No temperature was fitted" in card
