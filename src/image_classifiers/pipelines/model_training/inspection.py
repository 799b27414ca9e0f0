"""The node that looks inside a trained model: feature maps and Grad-CAM heatmaps.

The computations live in ``image_classifiers.inspection``; this module picks the images and
draws the figures (without pyplot, like the other nodes' figures).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure

from image_classifiers.inspection import feature_maps, grad_cam
from image_classifiers.params import EvaluationParams, InspectionParams
from image_classifiers.training import predict_probabilities, predicted_labels

from .nodes import show_image, test_split_for

logger = logging.getLogger(__name__)


def _message_figure(text: str) -> Figure:
    figure = Figure(figsize=(5, 2))
    figure.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return figure


def grad_cam_order(
    labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray
) -> np.ndarray:
    """Test-image indices for the Grad-CAM grid: misclassified ones first, most confident
    first, then the correctly classified ones, least confident first."""
    wrong = np.flatnonzero(predictions != labels)
    right = np.flatnonzero(predictions == labels)
    return np.concatenate(
        [
            wrong[np.argsort(-confidence[wrong], kind="stable")],
            right[np.argsort(confidence[right], kind="stable")],
        ]
    )


def inspect_model(
    model: keras.Model,
    test_set: dict[str, Any],
    inspection: InspectionParams,
    evaluation: EvaluationParams,
) -> tuple[Figure, Figure]:
    """The feature maps of the first convolutions and a grid of Grad-CAM heatmaps.

    Args:
        model: A trained classifier taking raw images.
        test_set: Decoded test split.
        inspection: ``feature_map_layers`` (first convolutions shown), ``feature_map_channels``
            (channels per convolution), ``feature_map_image`` (index of the test image),
            ``grad_cam_grid`` (test images, misclassified first), ``batch_size``; a model
            from Kedro, or a (partial) dict.
        evaluation: ``threshold`` for two classes, as in ``evaluate_model``.

    Returns:
        The feature-map figure and the Grad-CAM figure. A model that can't be looked inside
        (no convolution, a subclassed model) gets figures saying why, and a warning.

    Raises:
        ValueError: For a feature-map image or a test set that doesn't fit the model.
    """
    inspection = InspectionParams.coerce(inspection)
    images, labels, classes = test_split_for(model, test_set)
    if inspection.feature_map_image >= len(images):
        raise ValueError(
            f"inspection.feature_map_image is {inspection.feature_map_image} but the test set "
            f"has {len(images)} images."
        )
    try:
        maps = feature_maps(
            model, images[inspection.feature_map_image], layers=inspection.feature_map_layers
        )
        feature_figure = plot_feature_maps(
            images[inspection.feature_map_image], maps, channels=inspection.feature_map_channels
        )
        probabilities = predict_probabilities(model, images, inspection.batch_size)
        predictions = predicted_labels(probabilities, EvaluationParams.coerce(evaluation).threshold)
        confidence = probabilities[np.arange(len(predictions)), predictions]
        shown = grad_cam_order(labels, predictions, confidence)[: inspection.grad_cam_grid]
        heatmaps = grad_cam(
            model, images[shown], predictions[shown], batch_size=inspection.batch_size
        )
    except ValueError as exc:  # the model can't be looked inside: say so, don't fail training
        logger.warning("Cannot inspect model '%s': %s", model.name, exc)
        return _message_figure(f"No feature maps: {exc}"), _message_figure(f"No Grad-CAM: {exc}")
    cam_figure = plot_grad_cam(
        images[shown], heatmaps, labels[shown], predictions[shown], confidence[shown], classes
    )
    logger.info(
        "Inspected %s: feature maps of %d convolutions, Grad-CAM of %d test images "
        "(%d misclassified).",
        model.name,
        len(maps),
        len(shown),
        int(np.sum(predictions[shown] != labels[shown])),
    )
    return feature_figure, cam_figure


def plot_feature_maps(
    image: np.ndarray, maps: list[tuple[str, np.ndarray]], *, channels: int = 8
) -> Figure:
    """One row per convolution: the input image, then its first ``channels`` channels."""
    shown = max(1, min(channels, max(m.shape[-1] for _, m in maps)))
    figure = Figure(figsize=(1.6 * (shown + 1), 1.7 * len(maps)), layout="constrained")
    grid = figure.add_gridspec(len(maps), shown + 1)
    for row, (name, activation) in enumerate(maps):
        axes = figure.add_subplot(grid[row, 0])
        show_image(axes, image)
        axes.set_title("input", fontsize=8)
        for channel in range(min(shown, activation.shape[-1])):
            axes = figure.add_subplot(grid[row, channel + 1])
            axes.imshow(activation[..., channel], cmap="viridis")
            axes.set_title(f"{name}[{channel}]", fontsize=7)
            axes.axis("off")
    figure.suptitle(f"Feature maps of the first {len(maps)} convolutions")
    return figure


def plot_grad_cam(  # noqa: PLR0917 (parallel arrays of the shown images)
    images: np.ndarray,
    heatmaps: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    confidence: np.ndarray,
    classes: list[str],
) -> Figure:
    """Each image under its Grad-CAM heatmap for the predicted class, titled true/pred."""
    if len(images) == 0:
        return _message_figure("No Grad-CAM images (inspection.grad_cam_grid is 0)")
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.5 * rows), layout="constrained")
    for position, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, position + 1)
        show_image(axes, image)
        axes.imshow(heatmaps[position], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        mark = "" if labels[position] == predictions[position] else " ✗"
        axes.set_title(
            f"true: {classes[labels[position]]}{mark}\n"
            f"pred: {classes[predictions[position]]} ({confidence[position]:.2f})",
            fontsize=9,
        )
    wrong = int(np.sum(labels != predictions))
    figure.suptitle(
        f"Grad-CAM for the predicted class: {len(images)} test images "
        f"({wrong} misclassified, shown first)"
    )
    return figure
