"""What a trained Keras model leaves in MLflow, for kedro-mlflow's catalog datasets.

``mlflow_records`` turns a node's model and metrics into what the catalog's
``MlflowModelTrackingDataset`` (flavor ``mlflow.keras``, registered as ``<model>_keras``),
``MlflowMetricsHistoryDataset`` and ``MlflowArtifactDataset`` entries save;
``keras_signature`` is the signature ``hooks.ModelRunsHook`` gives a logged model.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
from kedro.io import DatasetError
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_classifiers.serving import is_serving_model
from image_classifiers.tracking import metric_history

logger = logging.getLogger(__name__)


def inference_model(model: Any) -> Any:
    """``model`` without its training-only augmentation, for the logged copy.

    ``RandomAugment`` is the identity at inference; without it a from-scratch model holds
    only Keras' own layers and loads with plain ``mlflow.keras.load_model`` anywhere. Other
    custom parts (transfer learning, GoogLeNet's heads) stay: load those with
    ``image_classifiers.models.load_model_file``. The layers are shared, not copied.
    """
    import keras

    from image_classifiers.layers import RandomAugment
    from image_classifiers.models import AuxiliaryHeadsModel

    if isinstance(model, AuxiliaryHeadsModel) or not any(
        isinstance(layer, RandomAugment) for layer in model.layers
    ):
        return model
    try:
        return keras.models.clone_model(
            model,
            clone_function=lambda layer: (
                keras.layers.Identity(name=layer.name)
                if isinstance(layer, RandomAugment)
                else layer
            ),
        )
    except (TypeError, ValueError) as exc:  # e.g. a subclassed model: log it as it is
        logger.debug("Logging %s with its augmentation layer: %s", model.name, exc)
        return model


def model_summary(model: Any) -> str:
    """``model.summary()`` as text."""
    lines: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text))
    return "\n".join(lines)


def mlflow_records(model: Any, metrics: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """Node: what a model's MLflow run gets beside the ``.keras`` file and metrics.json.

    Returns:
        The model to log (:func:`inference_model`), the test metrics and ``param_count`` as
        a metric history, and the model's summary text.
    """
    history = metric_history({**metrics, "param_count": int(model.count_params())})
    return inference_model(model), history, model_summary(model)


def keras_signature(model: Any) -> ModelSignature:
    """Tensor signature of a one-input Keras model: batch dimension -1, shapes from the model."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Expected a model with one input and one output, got {len(model.inputs)} inputs "
            f"and {len(model.outputs)} outputs."
        )

    def spec(tensor: Any, name: str | None) -> TensorSpec:
        shape = (-1, *(-1 if dim is None else int(dim) for dim in tensor.shape[1:]))
        return TensorSpec(np.dtype(tensor.dtype), shape, name)

    (inputs,), (outputs,) = model.inputs, model.outputs
    return ModelSignature(
        inputs=Schema([spec(inputs, getattr(inputs, "name", None) or "image")]),
        outputs=Schema([spec(outputs, None)]),
    )


# ---- until compare_architectures is one namespace per model (the pipelines helper's work):
# its train_architectures node logs each model itself. Delete with its last import.
def log_keras_model(model: Any, registered_model_name: str | None = None) -> None:
    """Log ``model`` to the active run as the catalog's entries do (registered unless
    ``registered_model_name`` is empty; never under a serving model's name)."""
    if registered_model_name and is_serving_model(registered_model_name):
        raise DatasetError(
            f"'{registered_model_name}' is the name of a serving model (its versions take "
            "encoded images); register a Keras-flavor model as '<model>_keras'."
        )
    logged, history, summary = mlflow_records(model, {})
    mlflow.log_text(summary, "model_summary.txt")
    mlflow.log_metric("param_count", history["param_count"][0]["value"])
    mlflow.keras.log_model(
        logged,
        name="model",
        signature=keras_signature(model),
        pip_requirements=["keras>=3.15,<4", "tensorflow>=2.21,<2.22"],  # as the catalog's
        registered_model_name=registered_model_name,
    )
