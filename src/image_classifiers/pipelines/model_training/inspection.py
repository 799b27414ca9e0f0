"""The node that draws a trained model's feature maps and Grad-CAM heatmaps
(computed by ``image_classifiers.core.inspection``)."""

import logging
from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure

from image_classifiers.core.inspection import feature_maps, grad_cam
from image_classifiers.core.params import EvaluationParams, InspectionParams
from image_classifiers.core.probabilities import predicted_labels
from image_classifiers.core.training import predict_probabilities

from .nodes import image_grid, message_figure, show_image, test_split_for

logger = logging.getLogger(__name__)


def grad_cam_order(
    labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray
) -> np.ndarray:
    """Misclassified test images, most confident first, then the rest, least confident first."""
    wrong = predictions != labels
    return np.lexsort((np.where(wrong, -confidence, confidence), ~wrong))  # stable


def inspect_model(
    model: keras.Model,
    test_set: dict[str, Any],
    inspection: InspectionParams,
    evaluation: EvaluationParams,
) -> tuple[Figure, Figure]:
    """Feature maps of the first convolutions and a grid of Grad-CAM heatmaps; a model that
    can't be looked inside gets figures saying why: it must not fail the run that trained it."""
    images, labels, classes = test_split_for(model, test_set)
    index = inspection.feature_map_image
    if index >= len(images):
        raise ValueError(
            f"inspection.feature_map_image is {index} but the test set has {len(images)} images."
        )
    try:
        maps = feature_maps(model, images[index], layers=inspection.feature_map_layers)
        probabilities = predict_probabilities(model, images, inspection.batch_size)
        predictions = predicted_labels(probabilities, evaluation.threshold)
        confidence = probabilities[np.arange(len(predictions)), predictions]
        shown = grad_cam_order(labels, predictions, confidence)[: inspection.grad_cam_grid]
        heatmaps = grad_cam(
            model, images[shown], predictions[shown], batch_size=inspection.batch_size
        )
    except ValueError as exc:
        logger.warning("Cannot inspect model '%s': %s", model.name, exc)
        return message_figure(f"No feature maps: {exc}"), message_figure(f"No Grad-CAM: {exc}")
    wrong = int(np.sum(predictions[shown] != labels[shown]))
    logger.info(
        "Inspected %s: feature maps of %d convolutions, Grad-CAM of %d test images "
        "(%d misclassified).",
        model.name,
        len(maps),
        len(shown),
        wrong,
    )
    feature_figure = plot_feature_maps(images[index], maps, inspection.feature_map_channels)
    if len(shown) == 0:
        return feature_figure, message_figure("No Grad-CAM images (inspection.grad_cam_grid is 0)")
    titles = [
        f"true: {classes[labels[i]]}{'' if labels[i] == predictions[i] else ' ✗'}\n"
        f"pred: {classes[predictions[i]]} ({confidence[i]:.2f})"
        for i in shown
    ]
    suptitle = (
        f"Grad-CAM for the predicted class: {len(shown)} test images "
        f"({wrong} misclassified, shown first)"
    )
    return feature_figure, image_grid(images[shown], titles, suptitle, heatmaps)


def plot_feature_maps(
    image: np.ndarray, maps: list[tuple[str, np.ndarray]], channels: int
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
