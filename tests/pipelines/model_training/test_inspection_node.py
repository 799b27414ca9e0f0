"""The inspect_model node: which test images it shows, its figures, its parameter errors."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import EvaluationParams, InspectionParams
from image_classifiers.pipelines.model_training.inspection import grad_cam_order, inspect_model


def _test_set(n: int = 6, shape: tuple[int, ...] = (28, 28, 1)) -> dict:
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (n, *shape)).astype("uint8"),
        "labels": (np.arange(n) % 3).astype("int32"),
        "classes": ["a", "b", "c"],
        "files": [],
    }


def test_misclassified_images_come_first_most_confident_first():
    labels = np.array([0, 1, 1, 0, 1])
    predictions = np.array([0, 0, 1, 1, 0])
    confidence = np.array([0.9, 0.6, 0.7, 0.8, 0.95])
    # Wrong: 4 (0.95), 3 (0.8), 1 (0.6); then right, least confident first: 2, 0.
    assert grad_cam_order(labels, predictions, confidence).tolist() == [4, 3, 1, 2, 0]


def test_grayscale_model_gets_both_figures():
    model = build_classifier("lenet", (28, 28, 1), 3, dense_units=8)
    inspection = InspectionParams(grad_cam_grid=4, feature_map_layers=2, feature_map_channels=3)
    feature_figure, cam_figure = inspect_model(model, _test_set(), inspection, EvaluationParams())
    # Two rows of the input image and 3 channels; a grid of 4 images.
    assert len(feature_figure.axes) == 2 * (1 + 3)
    assert len(cam_figure.axes) == 4
    assert all(isinstance(f, Figure) for f in (feature_figure, cam_figure))


def test_a_model_that_cannot_be_inspected_gets_figures_saying_why(caplog):
    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    with caplog.at_level(logging.WARNING):
        feature_figure, cam_figure = inspect_model(
            model, _test_set(), InspectionParams(), EvaluationParams()
        )
    assert "no convolution" in caplog.text
    assert "No Grad-CAM" in cam_figure.texts[0].get_text()
    assert "No feature maps" in feature_figure.texts[0].get_text()


@pytest.mark.parametrize(
    ("inspection", "message"),
    [
        ({"grad_cam_grd": 4}, r"unknown key 'grad_cam_grd' \(did you mean 'grad_cam_grid'\?\)"),
        ({"grad_cam_grid": -1}, "grad_cam_grid\n  Input should be greater than or equal to 0"),
        ({"batch_size": 0}, "batch_size\n  Input should be greater than or equal to 1"),
    ],
)
def test_bad_parameters_are_refused_by_their_group(inspection, message):
    with pytest.raises(ValueError, match=message):
        InspectionParams(**inspection)


def test_a_feature_map_image_beyond_the_test_set_is_refused():
    model = build_classifier("lenet", (28, 28, 1), 3, dense_units=8)
    with pytest.raises(ValueError, match="test set has 6 images"):
        inspect_model(model, _test_set(), InspectionParams(feature_map_image=6), EvaluationParams())


def test_a_test_set_of_another_shape_is_refused():
    model = build_classifier("lenet", (28, 28, 1), 3, dense_units=8)
    with pytest.raises(ValueError, match="takes images of shape"):
        inspect_model(model, _test_set(shape=(32, 32, 1)), InspectionParams(), EvaluationParams())
