"""Nodes that build, train and evaluate one image classifier; the evaluation is shared by
every training pipeline. Figures avoid pyplot: no global state, no display."""

import logging
import math
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from image_classifiers.core.evaluation import (
    calibration_metrics,
    fit_temperature,
    model_card,
    most_confused,
    per_class_metrics,
    reliability,
    sample_losses,
    split_summary,
    strict_json,
    top_losses,
)
from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.core.probabilities import apply_temperature, predicted_labels
from image_classifiers.core.training import (
    check_image_set,
    cross_entropy,
    fit_model,
    model_build_scope,
    predict_probabilities,
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
    model: keras.Model, test_set: dict[str, Any], name: str = "test_set"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A split's (the test split's) images, integer labels and class names, checked against
    ``model``."""
    check_image_set(name, test_set)
    images, labels = test_set["images"], np.asarray(test_set["labels"], dtype=np.int32)
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(
            f"The model takes images of shape {tuple(model.input_shape[1:])} but {name} "
            f"holds {tuple(images.shape[1:])}; decode the test set at the model's size."
        )
    return images, labels, [str(c) for c in test_set["classes"]]


def calibrate_model(
    model: keras.Model, validation_set: dict[str, Any], evaluation: EvaluationParams
) -> dict[str, Any]:
    """The temperature that calibrates ``model``'s probabilities on the validation split
    (1.0 with ``evaluation.calibrate`` off), saved beside the model for predict and serving."""
    if not evaluation.calibrate:
        return {"temperature": 1.0, "calibrated": False}
    images, labels, _ = test_split_for(model, validation_set, "validation_set")
    probabilities = predict_probabilities(
        model, images, evaluation.batch_size, flip_average=evaluation.test_time_flip
    )
    temperature = fit_temperature(probabilities, labels)
    before, after = (
        cross_entropy(apply_temperature(probabilities, t), labels) for t in (1.0, temperature)
    )
    logger.info(
        "Temperature %.3f fitted on %d validation images: loss %.4f -> %.4f.",
        temperature,
        len(labels),
        before,
        after,
    )
    return {
        "temperature": temperature,
        "calibrated": True,
        "validation_images": len(labels),
        "validation_loss": before,
        "validation_loss_calibrated": after,
    }


def evaluate_model(
    model: keras.Model,
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    calibration: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Figure, Figure, Figure, pd.DataFrame]:
    """Test metrics (per class, most-confused pairs and calibration too, strict JSON), the
    confusion matrix, the misclassified images of highest loss, the reliability diagram and
    the top losses; ``calibration``'s temperature is measured, not applied to the metrics."""
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
    temperature = (calibration or {}).get("temperature", 1.0)
    bins = evaluation.calibration_bins
    metrics |= calibration_metrics(probabilities, labels, temperature, bins)
    metrics["threshold"] = evaluation.threshold
    metrics["per_class"] = per_class_metrics(labels, predictions, classes)
    matrix = np.array(metrics["confusion_matrix"])
    metrics["most_confused"] = most_confused(matrix, classes, evaluation.most_confused)
    auc = metrics["test_roc_auc"]
    logger.info(
        "Test: loss %.4f, accuracy %.4f, F1 %.4f, ROC AUC %s, ECE %.4f on %d images.",
        metrics["test_loss"],
        metrics["test_accuracy"],
        metrics["test_f1"],
        "n/a" if auc is None else f"{auc:.4f}",
        metrics["test_expected_calibration_error"],
        metrics["num_test_images"],
    )
    order = top_losses(probabilities, labels, predictions)
    files = [str(f) for f in test_set.get("files", [])] or [f"#{i}" for i in range(len(labels))]
    names = np.asarray(classes, dtype=object)
    losses = pd.DataFrame(
        {
            "file": np.asarray(files, dtype=object)[order],
            "true_class": names[labels[order]],
            "predicted_class": names[predictions[order]],
            "probability": probabilities[order, predictions[order]],
            "loss": sample_losses(probabilities, labels)[order],
        }
    )
    shown = order[: evaluation.misclassified_grid]
    if len(shown):
        titles = [
            f"true: {row.true_class}\npred: {row.predicted_class} ({row.probability:.2f})"
            for row in losses.head(len(shown)).itertuples()
        ]
        suptitle = f"{len(shown)} of {len(order)} misclassified test images, highest loss first"
        misclassified = image_grid(images[shown], titles, suptitle)
    else:
        misclassified = message_figure("No misclassified test images")
    reliability_plot = plot_reliability(
        reliability(probabilities, labels, bins),
        reliability(apply_temperature(probabilities, temperature), labels, bins),
        metrics,
    )
    return (
        strict_json(metrics),
        plot_confusion_matrix(matrix, classes),
        misclassified,
        reliability_plot,
        losses,
    )


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


def plot_reliability(
    before: dict[str, list], after: dict[str, list], metrics: dict[str, Any]
) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, as predicted and after the
    temperature; a calibrated model lies on the diagonal."""
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="Perfect calibration")
    ece, temperature = metrics["test_expected_calibration_error"], metrics["temperature"]
    curves = [(before, f"As predicted (ECE {ece:.3f})", "o-")]
    if temperature != 1.0:
        ece = metrics["test_expected_calibration_error_calibrated"]
        curves.append((after, f"Temperature {temperature:.2f} (ECE {ece:.3f})", "s--"))
    for table, label, style in curves:
        confidence, accuracy = (np.array(table[k], dtype=float) for k in ("confidence", "accuracy"))
        axes.plot(confidence, accuracy, style, label=label)  # empty bins (NaN) are gaps
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (top class)", ylabel="Accuracy")
    axes.set_title(f"Reliability on {metrics['num_test_images']} test images")
    axes.legend(loc="upper left")
    return figure


def write_model_card(
    *,
    model: keras.Model,
    metrics: dict[str, Any],
    calibration: dict[str, Any],
    top_losses: pd.DataFrame,
    training_history: dict[str, list[Any]],
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    training: TrainingParams,
    model_summary: str,
) -> str:
    """The model card (Markdown) of a trained model, from its report and Keras summary; the
    command that made it is this process's ``kedro run`` command line, when there is one."""
    arguments = sys.argv[1:] if Path(sys.argv[0]).name == "kedro" else []
    command = shlex.join(["kedro", *arguments]) if arguments[:1] == ["run"] else None
    return model_card(
        {
            "name": model.name,
            "input_shape": list(model.input_shape[1:]),
            "parameters": int(model.count_params()),
            "epochs": len(training_history.get("loss", [])),
            "summary": model_summary,
        },
        metrics,
        calibration=calibration,
        losses=top_losses.to_dict("records"),
        splits={
            "train": split_summary(train_set),
            "validation": split_summary(validation_set),
            "test": split_summary(test_set),
        },
        training=training.model_dump(mode="json"),
        command=command,
    )


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
