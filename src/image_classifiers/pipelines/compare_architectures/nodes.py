"""Nodes that train the listed models one after the other, summarise and compare them.

``train_architectures`` reads the model list from ``params:compare_architectures`` when it
runs, so ``--params`` can change it (a Kedro DAG is fixed at registration; a loop inside one
node is not). Each model goes through the ``model_training`` nodes' own functions, in its own
MLflow run nested in the pipeline's (``hooks.model_run``: what a ``model_training`` namespace
gets), and what the catalog's ``Mlflow*`` datasets log for a namespace is logged to that run
here, by the same functions (``log_keras_model``, ``log_metrics``): a save after the node
would land in the pipeline's run. The catalog then keeps the local files.
"""

from __future__ import annotations

import logging
import math
import statistics
from typing import Any

import keras
import mlflow
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter, ScalarFormatter

from image_classifiers.hooks import model_run
from image_classifiers.model_logging import log_keras_model
from image_classifiers.params import (
    AugmentationParams,
    CompareArchitecturesParams,
    EvaluationParams,
    InspectionParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.pipelines.model_training.inspection import inspect_model
from image_classifiers.pipelines.model_training.nodes import (
    build_model,
    evaluate_model,
    plot_training_curves,
    train_model,
)
from image_classifiers.tracking import log_metrics

logger = logging.getLogger(__name__)

#: Columns of data/08_reporting/architecture_comparison.csv, in order.
COMPARISON_COLUMNS = (
    "model",
    "architecture",
    "params",
    "test_accuracy",
    "test_loss",
    "train_seconds",
    "epoch_seconds",
    "epochs",
)


def train_architectures(
    *,
    compare: CompareArchitecturesParams,
    models: dict[str, Any],
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    training: TrainingParams,
    augmentation: AugmentationParams | None,
    evaluation: EvaluationParams,
    inspection: InspectionParams,
) -> tuple[dict[str, keras.Model], dict[str, Any], dict[str, Figure], dict[str, dict[str, Any]]]:
    """Build, train, evaluate, inspect and summarise each model in ``compare.models``.

    Args:
        compare: ``compare_architectures`` parameters: the model names, in training order,
            and whether to register each model (as ``<model>_keras``).
        models: The ``models`` parameters; each listed name must be a key.
        train_set: Decoded training split (shared by all models).
        validation_set: Decoded validation split.
        test_set: Decoded test split.
        training: ``training`` parameters (shared).
        augmentation: ``augmentation`` parameters (shared).
        evaluation: ``evaluation`` parameters (shared).
        inspection: ``inspection`` parameters (shared).

    Returns:
        The trained models by name; the reports by ``<model>/<report>`` (``metrics``,
        ``training_history``); the figures by ``<model>/<figure>`` (``training_curves``,
        ``confusion_matrix``, ``misclassified``, ``feature_maps``, ``grad_cam``); and the
        ``summarise_training`` summaries by name.

    Raises:
        ValueError: If a listed name has no ``models.<name>`` parameters.
    """
    compare = CompareArchitecturesParams.coerce(compare)
    trained, reports, figures, summaries = {}, {}, {}, {}
    for name, options in compare.listed_options(models).items():
        inputs = {
            f"params:models.{name}": options,
            "params:training": training,
            "params:augmentation": augmentation,
            "params:evaluation": evaluation,
            "params:inspection": inspection,
            "train_set": train_set,
            "validation_set": validation_set,
            "test_set": test_set,
        }
        logger.info("Training model %s (%s).", name, options.architecture)
        with model_run(name, inputs) as run_id:
            model = build_model(train_set, options, augmentation, training)
            model, history = train_model(model, train_set, validation_set, training)
            metrics, confusion, misclassified = evaluate_model(model, test_set, evaluation)
            feature_maps, grad_cam = inspect_model(model, test_set, inspection, evaluation)
            plots = {
                "training_curves": plot_training_curves(history),
                "confusion_matrix": confusion,
                "misclassified": misclassified,
                "feature_maps": feature_maps,
                "grad_cam": grad_cam,
            }
            summary = summarise_training(model, metrics, history, options)
            if run_id is not None:
                log_keras_model(model, f"{name}_keras" if compare.register_models else None)
                log_metrics(run_id, metrics)
                log_metrics(run_id, summary, keys=["train_seconds"])
                for plot, figure in plots.items():
                    mlflow.log_figure(figure, f"{plot}.png")
        trained[name] = model
        reports.update({f"{name}/metrics": metrics, f"{name}/training_history": history})
        figures.update({f"{name}/{plot}": figure for plot, figure in plots.items()})
        summaries[name] = summary
    return trained, reports, figures, summaries


def summarise_training(
    model: Any,
    metrics: dict[str, Any],
    training_history: dict[str, list[float]],
    model_options: ModelOptions,
) -> dict[str, Any]:
    """Collect what the comparison needs about one trained model.

    Args:
        model: The trained Keras model (only its parameter count is read).
        metrics: The model's test metrics (``test_accuracy``, ``test_loss``, ...).
        training_history: Per-epoch history; ``epoch_seconds`` gives the timings.
        model_options: The model's ``models.<name>`` parameters (``architecture``, ...).

    Returns:
        ``architecture``, ``params``, ``test_accuracy``, ``test_loss``, ``train_seconds``
        (all epochs), ``epoch_seconds`` (median epoch, which leaves out the first epoch's
        one-off compilation) and ``epochs``.

    Raises:
        ValueError: If the metrics or the history lack what the comparison reports.
    """
    missing = [key for key in ("test_accuracy", "test_loss") if key not in metrics]
    if missing:
        raise ValueError(
            f"The test metrics lack {missing}; re-run the model's evaluate_model node."
        )
    epoch_seconds = [float(s) for s in training_history.get("epoch_seconds") or []]
    return {
        "architecture": ModelOptions.coerce(model_options).architecture,
        "params": int(model.count_params()),
        "test_accuracy": float(metrics["test_accuracy"]),
        "test_loss": float(metrics["test_loss"]),
        "train_seconds": round(sum(epoch_seconds), 3),
        "epoch_seconds": round(statistics.median(epoch_seconds), 3) if epoch_seconds else math.nan,
        "epochs": len(epoch_seconds),
    }


def compare_architectures(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per model, best test accuracy first.

    Args:
        summaries: ``summarise_training`` outputs keyed by model name.

    Returns:
        A table with ``COMPARISON_COLUMNS``.

    Raises:
        ValueError: If there is nothing to compare.
    """
    if not summaries:
        raise ValueError(
            "No models to compare: list some in compare_architectures.models, e.g. "
            '--params="compare_architectures.models=simple_convnet mini_xception".'
        )
    rows = [{**summary, "model": name} for name, summary in summaries.items()]
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    table = table.sort_values(
        ["test_accuracy", "test_loss"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    for row in table.itertuples():
        logger.info(
            "%-20s %-18s %11s params  test accuracy %.4f  loss %.4f  %.1f s",
            row.model,
            row.architecture,
            f"{row.params:,}",
            row.test_accuracy,
            row.test_loss,
            row.train_seconds,
        )
    return table


def plot_architecture_comparison(comparison: pd.DataFrame) -> Figure:
    """Test accuracy against model size and against training time, one labelled dot per model.

    Args:
        comparison: The ``compare_architectures`` table.

    Returns:
        A two-panel figure.
    """
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    panels = (
        ("params", "Parameters", "Accuracy vs model size", EngFormatter(sep=" ")),
        ("train_seconds", "Training time (s)", "Accuracy vs training time", ScalarFormatter()),
    )
    for position, (column, label, title, formatter) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.scatter(comparison[column], comparison["test_accuracy"], s=40, color="tab:blue")
        for row in comparison.itertuples():
            axes.annotate(
                row.model,
                (getattr(row, column), row.test_accuracy),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=9,
            )
        values = comparison[column]
        if (values > 0).all() and values.max() >= 10 * values.min():
            # Model sizes (and times) can span orders of magnitude.
            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.xaxis.set_major_formatter(formatter)
        axes.margins(x=0.2, y=0.15)  # room for the labels at the edges
        axes.set_xlabel(label)
        axes.set_ylabel("Test accuracy")
        axes.set_title(title)
        axes.grid(alpha=0.3)
    figure.suptitle(f"{len(comparison)} models on the same data")
    return figure
