"""Export a classifier to every ``export.formats`` and verify each file in its own runtime.

A file is written under a hidden temporary name, loaded by its runtime and scored on the test
split; only a file that loads and stays within ``export.max_accuracy_drop`` of Keras' test
accuracy is renamed to its published name. Any failure (a converter that cannot express a
layer, a runtime that cannot load the file, a full disk) refuses that format alone.
"""

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from image_classifiers.core.export import (
    EXPORTERS,
    FILES,
    RUNTIMES,
    check_backend,
    input_contract,
    latency_ms,
    load_runtime,
    runtime_probabilities,
    size_bytes,
)
from image_classifiers.core.models import ModelFileError
from image_classifiers.core.params import DecodeParams, EvaluationParams, ExportParams
from image_classifiers.core.probabilities import predicted_labels
from image_classifiers.core.training import check_image_set, predict_probabilities
from image_classifiers.datasets.atomic import atomic_file, atomic_folder
from image_classifiers.model_logging import inference_model
from image_classifiers.serving import ModelNotFoundError, load_classifier, model_image_size
from image_classifiers.tracking import metric_history

logger = logging.getLogger(__name__)

OK, REFUSED = "ok", "refused"
_METRICS = ("bytes", "test_accuracy", "accuracy_change", "agreement", "latency_p50_ms")


def export_name(source: str) -> str:
    """Folder name of a model: ``mini_xception`` for ``.../mini_xception.keras``,
    ``cats_vs_dogs-champion`` for ``models:/cats_vs_dogs@champion``."""
    if ":/" not in source:
        return Path(source).stem
    return re.sub(r"[^\w.]+", "-", source.split(":/", 1)[1]).strip("-")


def export_model(
    train_set: dict[str, Any],
    test_set: dict[str, Any],
    decode: DecodeParams,
    evaluation: EvaluationParams,
    export: ExportParams,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Node: the report by ``<model>/export_report`` (a partition), its figures as MLflow
    metrics, and the report itself for :func:`check_exports`."""
    check_backend()
    name = export_name(export.model)
    try:
        classifier = load_classifier(export.model)
    except ModelNotFoundError:
        raise
    except (FileNotFoundError, ModelFileError) as exc:  # their message says what to do
        raise ValueError(f"Cannot export: {exc}") from exc
    except Exception as exc:  # Keras raises many kinds for a file that is not a model
        raise ValueError(
            f"Cannot export '{export.model}': it is not a Keras model this project can load "
            f"({type(exc).__name__}: {exc}). Give a .keras file or models:/<name>@<alias>."
        ) from exc
    threshold = evaluation.threshold if classifier.threshold is None else classifier.threshold
    report = export_formats(
        classifier.model,
        name,
        test_set,
        export,
        train_set=train_set,
        threshold=threshold,
        resample=decode.resample,
    )
    report["model"] = export.model
    figures = {
        f"export.{fmt}.{key}": value
        for fmt, result in report["formats"].items()
        for key, value in result.items()
        if key in _METRICS
    }
    return {f"{name}/export_report": report}, metric_history(figures), report


def export_formats(
    model: Any,
    name: str,
    test_set: dict[str, Any],
    export: ExportParams,
    *,
    train_set: dict[str, Any] | None = None,
    threshold: float = 0.5,
    resample: str = "bilinear",
) -> dict[str, Any]:
    """Export ``model`` to each of ``export.formats`` under ``export.output_dir/name/`` and
    verify each; the report (per format ``status`` ok or refused, with the reason)."""
    model = inference_model(model)  # no training-only augmentation layer in the graph
    check_image_set("test_set", test_set)
    size = tuple(test_set["images"].shape[1:3])
    if model_image_size(model, size) != size:
        raise ValueError(
            f"Cannot export '{name}': it takes {model_image_size(model)} images but the test "
            f"split holds {size} ones; decode the data at the model's size (decode.image_size)."
        )
    labels = np.asarray(test_set["labels"])
    keras_labels = predicted_labels(
        predict_probabilities(model, test_set["images"], export.batch_size), threshold
    )
    keras_accuracy = float(np.mean(keras_labels == labels))
    representative = None
    if train_set is not None and export.representative_size:
        step = max(1, len(train_set["images"]) // export.representative_size)
        representative = np.asarray(train_set["images"][::step][: export.representative_size])
    folder = Path(export.output_dir) / name
    formats = {}
    for fmt in export.formats:
        target = folder / FILES[fmt]
        publish = atomic_folder if fmt == "saved_model" else atomic_file
        try:
            with publish(target) as tmp:
                EXPORTERS[fmt](model, tmp, representative)
                predict = load_runtime(fmt, tmp)
                predicted = predicted_labels(
                    runtime_probabilities(predict, test_set["images"], export.batch_size),
                    threshold,
                )
                accuracy = float(np.mean(predicted == labels))
                if keras_accuracy - accuracy > export.max_accuracy_drop:
                    raise ValueError(
                        f"test accuracy {accuracy:.4f} is more than export.max_accuracy_drop "
                        f"({export.max_accuracy_drop}) below Keras' {keras_accuracy:.4f}"
                    )
                result = {
                    "status": OK,
                    "file": str(target),
                    "runtime": RUNTIMES[fmt],
                    "bytes": size_bytes(tmp),
                    "test_accuracy": accuracy,
                    "accuracy_change": accuracy - keras_accuracy,
                    "agreement": float(np.mean(predicted == keras_labels)),
                    **latency_ms(predict, test_set["images"][0], export.latency_runs),
                }
        except Exception as exc:  # converters and runtimes raise anything: refuse this format
            reason = f"{name} as {fmt}: {type(exc).__name__}: {exc}".strip()
            logger.warning("Refused %s", reason)
            if target.is_dir():  # an earlier run's file of this format is not this model's
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
            result = {"status": REFUSED, "file": None, "reason": reason}
        else:
            logger.info(
                "Exported %s as %s: %s (accuracy %+.4f vs Keras)",
                name,
                fmt,
                target,
                result["accuracy_change"],
            )
        formats[fmt] = result
    return {
        "name": name,
        "keras": {"test_accuracy": keras_accuracy, "test_images": len(labels)},
        "input": input_contract(model, resample),
        "max_accuracy_drop": export.max_accuracy_drop,
        "formats": formats,
    }


def check_exports(report: dict[str, Any]) -> None:
    """Node: an error when no format verified (the saved report says why)."""
    refused = {f: r["reason"] for f, r in report["formats"].items() if r["status"] != OK}
    if len(refused) == len(report["formats"]):
        raise ValueError(
            f"No format of '{report['name']}' verified: {'; '.join(refused.values())}."
        )
    if refused:
        logger.warning("Refused formats of %s: %s.", report["name"], ", ".join(refused))
