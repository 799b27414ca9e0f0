"""Nodes that build, train and evaluate one image classifier.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no global figure
state, no display needed (they render with Agg when the catalog saves them).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from image_classifiers.models import build_classifier
from image_classifiers.params import (
    AugmentationParams,
    EvaluationParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.training import (
    check_image_set,
    cross_entropy,
    fit_model,
    model_build_scope,
    predict_probabilities,
    predicted_labels,
)

logger = logging.getLogger(__name__)


def build_model(
    train_set: dict[str, Any],
    model_options: ModelOptions,
    augmentation: AugmentationParams | None,
    training: TrainingParams | None = None,
) -> keras.Model:
    """Build the classifier named in ``model_options`` for the training data's shape.

    Args:
        train_set: Decoded training split; gives the input shape and the classes.
        model_options: ``models.<name>`` parameters: ``architecture``, optionally
            ``normalization`` (``rescale`` | ``standardize``, see ``build_classifier``),
            plus the builder's options.
        augmentation: ``augmentation`` parameters (training-only random transforms); None
            for none.
        training: ``training`` parameters; the seed and mixed precision act at build time.
        (Dicts are accepted too, e.g. from tests: they are validated the same way.)

    Returns:
        An uncompiled model taking raw uint8 images.
    """
    model_options = ModelOptions.coerce(model_options)
    architecture = model_options.architecture
    augmentation = None if augmentation is None else AugmentationParams.coerce(augmentation)
    check_image_set("train_set", train_set)
    input_shape = tuple(train_set["images"].shape[1:])
    num_classes = len(train_set["classes"])
    with model_build_scope(training):
        model = build_classifier(
            architecture,
            input_shape,
            num_classes,
            augmentation=augmentation and augmentation.model_dump(),
            train_images=train_set["images"],
            **model_options.options,
        )
    logger.info(
        "Built %s for %s images, %d classes: %s parameters.",
        architecture,
        "x".join(map(str, input_shape)),
        num_classes,
        f"{model.count_params():,}",
    )
    return model


def train_model(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train ``model``; the weights of the epoch with the lowest ``val_loss`` are kept.

    Returns:
        The trained model and its per-epoch history (see ``training.fit_model``).
    """
    return fit_model(model, train_set, validation_set, training)


def test_split_for(
    model: keras.Model, test_set: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The test split's images, integer labels and class names, checked against ``model``.

    Raises:
        ValueError: If the split is unusable or its images are not the model's input shape.
    """
    check_image_set("test_set", test_set)
    images, labels = test_set["images"], np.asarray(test_set["labels"], dtype=np.int32)
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(
            f"The model takes images of shape {tuple(model.input_shape[1:])} but test_set "
            f"holds {tuple(images.shape[1:])}; decode the test set at the model's size."
        )
    return images, labels, [str(c) for c in test_set["classes"]]


def evaluate_model(
    model: keras.Model, test_set: dict[str, Any], evaluation: EvaluationParams
) -> tuple[dict[str, Any], Figure, Figure]:
    """Score ``model`` on the test split.

    Args:
        model: A trained classifier taking raw uint8 images.
        test_set: Decoded test split.
        evaluation: ``threshold`` (two classes: probability above which the second class
            is predicted), ``misclassified_grid`` (images in the grid), ``batch_size``,
            ``test_time_flip`` (average each image's prediction with its mirror image's).

    Returns:
        Metrics (``test_loss``, ``test_accuracy``, ``test_precision``, ``test_recall``,
        ``test_f1``, ``test_roc_auc``, ``num_test_images``, ``confusion_matrix`` ...), the
        confusion-matrix figure and a grid of misclassified test images.
    """
    evaluation = EvaluationParams.coerce(evaluation)
    images, labels, classes = test_split_for(model, test_set)
    threshold = evaluation.threshold
    probabilities = predict_probabilities(
        model, images, evaluation.batch_size, flip_average=evaluation.test_time_flip
    )
    if probabilities.shape[-1] != len(classes):
        raise ValueError(
            f"The model predicts {probabilities.shape[-1]} classes but test_set has "
            f"{len(classes)} ({classes})."
        )
    predictions = predicted_labels(probabilities, threshold)
    metrics = classification_metrics(labels, probabilities, predictions, classes)
    metrics["threshold"] = threshold
    logger.info(
        "Test: loss %.4f, accuracy %.4f, F1 %.4f, ROC AUC %s on %d images.",
        metrics["test_loss"],
        metrics["test_accuracy"],
        metrics["test_f1"],
        "n/a" if metrics["test_roc_auc"] is None else f"{metrics['test_roc_auc']:.4f}",
        metrics["num_test_images"],
    )
    confusion = plot_confusion_matrix(np.array(metrics["confusion_matrix"]), classes)
    misclassified = plot_misclassified(
        images,
        labels,
        probabilities,
        predictions,
        classes,
        limit=evaluation.misclassified_grid,
    )
    return metrics, confusion, misclassified


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Loss, accuracy, precision, recall, F1, ROC AUC and confusion matrix.

    Two classes: precision/recall/F1 of the second class (the positive one), AUC of its
    probability. More: macro averages and one-vs-rest macro AUC.

    Args:
        labels: True class indices (N,).
        probabilities: Class probabilities (N, num_classes).
        predictions: Predicted class indices (N,).
        classes: Class names, in index order.

    Returns:
        A JSON-serialisable dict; ``test_roc_auc`` is None when the test set holds a single
        class (the AUC is undefined then).
    """
    indices = list(range(len(classes)))
    binary = len(classes) == 2
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels,
        predictions,
        labels=indices,
        average="binary" if binary else "macro",
        zero_division=0,
    )
    if len(np.unique(labels)) < 2:
        logger.warning("The test set holds a single class: ROC AUC is undefined.")
        auc = None
    elif binary:
        auc = float(roc_auc_score(labels, probabilities[:, 1]))
    else:
        auc = float(
            roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=indices)
        )
    matrix = confusion_matrix(labels, predictions, labels=indices)
    return {
        "test_loss": cross_entropy(probabilities, labels),
        "test_accuracy": float(np.mean(predictions == labels)),
        "test_precision": float(precision),
        "test_recall": float(recall),
        "test_f1": float(f1),
        "test_roc_auc": auc,
        "num_test_images": len(labels),
        "num_misclassified": int(np.sum(predictions != labels)),
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
    }


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str]) -> Figure:
    """Counts of true (rows) against predicted (columns) classes."""
    size = max(4.0, 0.6 * len(classes) + 2.5)
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.add_subplot()
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(
        ax=axes, cmap="Blues", colorbar=False, values_format="d"
    )
    axes.set_title(f"Confusion matrix ({int(matrix.sum())} test images)")
    return figure


def show_image(axes: Axes, image: np.ndarray) -> None:
    """Draw one raw image: RGB as is, a single channel in grey."""
    if image.ndim == 3 and image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axes.imshow(image.astype("uint8") if image.dtype != np.uint8 else image)
    axes.axis("off")


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    predictions: np.ndarray,
    classes: list[str],
    *,
    limit: int = 16,
) -> Figure:
    """A grid of the most confidently misclassified images, titled true/predicted/prob."""
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][: max(0, limit)]
    if len(shown) == 0:
        figure = Figure(figsize=(4, 2))
        figure.text(0.5, 0.5, "No misclassified test images", ha="center", va="center")
        return figure
    columns = math.ceil(math.sqrt(len(shown)))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.5 * rows), layout="constrained")
    for position, index in enumerate(shown, start=1):
        axes = figure.add_subplot(rows, columns, position)
        show_image(axes, images[index])
        predicted = predictions[index]
        axes.set_title(
            f"true: {classes[labels[index]]}\n"
            f"pred: {classes[predicted]} ({probabilities[index, predicted]:.2f})",
            fontsize=9,
        )
    figure.suptitle(f"{len(shown)} of {len(wrong)} misclassified test images")
    return figure


def plot_training_curves(history: dict[str, list[float]]) -> Figure:
    """Accuracy and loss per epoch, training vs validation (dots vs line, as in the book)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    if len(epochs) == 0:
        figure.text(0.5, 0.5, "No epochs trained", ha="center", va="center")
        return figure
    best = int(np.nanargmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    for position, metric in enumerate(("accuracy", "loss"), start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.plot(epochs, history[metric], "bo", markersize=3, label=f"Training {metric}")
        if history.get(f"val_{metric}"):
            # A line needs two epochs; mark a lone one so it still shows.
            marker = "x" if len(epochs) == 1 else None
            axes.plot(
                epochs, history[f"val_{metric}"], "b", marker=marker, label=f"Validation {metric}"
            )
        if best is not None:
            axes.axvline(best, color="grey", linestyle="--", label=f"Best epoch ({best})")
        axes.set_title(f"Training and validation {metric}")
        axes.set_xlabel("Epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
    return figure
