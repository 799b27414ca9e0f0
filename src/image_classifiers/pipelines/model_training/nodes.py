"""Nodes that build, train and evaluate one image classifier; the evaluation is shared by
every training pipeline. Figures avoid pyplot: no global state, no display."""

import logging
import math
from collections.abc import Callable
from functools import partial
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

from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.core.training import (
    check_image_set,
    cross_entropy,
    fit_model,
    model_build_scope,
    predict_probabilities,
    predicted_labels,
)
from image_classifiers.tracking import MlflowEpochMetrics

logger = logging.getLogger(__name__)


def build_for_data(
    build: Callable[..., keras.Model],
    train_set: dict[str, Any],
    augmentation: AugmentationParams | None,
    training: TrainingParams | None,
) -> keras.Model:
    """``build`` for the training split, in ``model_build_scope``: seed and precision act then."""
    check_image_set("train_set", train_set)
    shape = tuple(train_set["images"].shape[1:])
    num_classes = len(train_set["classes"])
    with model_build_scope(training):
        model = build(shape, num_classes, augmentation=augmentation and augmentation.model_dump())
    logger.info(
        "Built %s for %s images, %d classes: %s parameters.",
        model.name,
        "x".join(map(str, shape)),
        num_classes,
        f"{model.count_params():,}",
    )
    return model


def build_model(
    train_set: dict[str, Any],
    model_options: ModelOptions,
    augmentation: AugmentationParams | None,
    training: TrainingParams | None = None,
) -> keras.Model:
    """The uncompiled classifier ``models.<name>`` describes, for the training data."""
    build = partial(
        build_classifier,
        model_options.architecture,
        train_images=train_set["images"],
        **model_options.options,
    )
    return build_for_data(build, train_set, augmentation, training)


def train_model(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train ``model`` (``training.fit_model``), sending each epoch's metrics to MLflow."""
    return fit_model(model, train_set, validation_set, training, callbacks=[MlflowEpochMetrics()])


def test_split_for(
    model: keras.Model, test_set: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The test split's images, integer labels and class names, checked against ``model``."""
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
    """Test metrics, the confusion matrix and the most confidently misclassified images."""
    images, labels, classes = test_split_for(model, test_set)
    probabilities = predict_probabilities(
        model, images, evaluation.batch_size, flip_average=evaluation.test_time_flip
    )
    if probabilities.shape[-1] != len(classes):
        raise ValueError(
            f"The model predicts {probabilities.shape[-1]} classes but test_set has "
            f"{len(classes)} ({classes})."
        )
    predictions = predicted_labels(probabilities, evaluation.threshold)
    metrics = classification_metrics(labels, probabilities, predictions, classes)
    metrics["threshold"] = evaluation.threshold
    auc = metrics["test_roc_auc"]
    logger.info(
        "Test: loss %.4f, accuracy %.4f, F1 %.4f, ROC AUC %s on %d images.",
        metrics["test_loss"],
        metrics["test_accuracy"],
        metrics["test_f1"],
        "n/a" if auc is None else f"{auc:.4f}",
        metrics["num_test_images"],
    )
    confidence = probabilities[np.arange(len(predictions)), predictions]
    wrong = np.flatnonzero(predictions != labels)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][: evaluation.misclassified_grid]
    if len(shown):
        titles = [
            f"true: {classes[labels[i]]}\npred: {classes[predictions[i]]} ({confidence[i]:.2f})"
            for i in shown
        ]
        suptitle = f"{len(shown)} of {len(wrong)} misclassified test images"
        misclassified = image_grid(images[shown], titles, suptitle)
    else:
        misclassified = message_figure("No misclassified test images")
    matrix = plot_confusion_matrix(np.array(metrics["confusion_matrix"]), classes)
    return metrics, matrix, misclassified


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """JSON-ready test metrics: for two classes the second class's scores, else macro
    averages (one-vs-rest AUC); ``test_roc_auc`` is None for a test set of one class."""
    indices = list(range(len(classes)))
    binary = len(classes) == 2
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=indices, average="binary" if binary else "macro",
        zero_division=0,
    )  # fmt: skip
    present = set(np.unique(labels).tolist())
    if absent := [name for i, name in enumerate(classes) if i not in present]:
        logger.warning(
            "The test set holds no images of classes %s: metrics undefined without them are "
            "null in metrics.json; give them test images (split.fractions, more images).",
            absent,
        )
    if len(present) < 2:
        auc = None
    elif binary:
        auc = float(roc_auc_score(labels, probabilities[:, 1]))
    else:
        auc = float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=indices))
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
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
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


def message_figure(text: str) -> Figure:
    """A figure that says ``text``."""
    figure = Figure(figsize=(5, 2))
    figure.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return figure


def show_image(axes: Axes, image: np.ndarray) -> None:
    """Draw one raw image: RGB as is, a single channel in grey."""
    if image.ndim == 3 and image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axes.imshow(image.astype("uint8"))
    axes.axis("off")


def image_grid(
    images: np.ndarray, titles: list[str], suptitle: str, heatmaps: np.ndarray | None = None
) -> Figure:
    """Images in a near-square grid, each titled, under its heatmap if given."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.5 * rows), layout="constrained")
    for position, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, position + 1)
        show_image(axes, image)
        if heatmaps is not None:
            axes.imshow(heatmaps[position], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        axes.set_title(titles[position], fontsize=9)
    figure.suptitle(suptitle)
    return figure


def plot_training_curves(history: dict[str, list[Any]]) -> Figure:
    """Accuracy and loss per epoch, the best epoch, and where fine-tuning starts (if any)."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    if len(epochs) == 0:
        return message_figure("No epochs trained")
    figure = Figure(figsize=(11, 4), layout="constrained")
    best = int(np.nanargmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    phases = list(history.get("phase", []))
    tuned = phases.index("fine_tuning") if "fine_tuning" in phases[1:] else None
    for position, metric in enumerate(("accuracy", "loss"), start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.plot(epochs, history[metric], "bo", markersize=3, label=f"Training {metric}")
        if validation := history.get(f"val_{metric}"):
            marker = "x" if len(epochs) == 1 else None  # a line needs two epochs
            axes.plot(epochs, validation, "b", marker=marker, label=f"Validation {metric}")
        if best is not None:
            axes.axvline(best, color="grey", linestyle="--", label=f"Best epoch ({best})")
        if tuned is not None:
            axes.axvline(tuned + 0.5, color="tab:red", linestyle=":", label="Fine-tuning starts")
        axes.set_title(f"Training and validation {metric}")
        axes.set_xlabel("Epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
    return figure
