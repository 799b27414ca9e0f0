"""What a trained Keras model leaves in MLflow, for kedro-mlflow's catalog datasets.

``mlflow_records`` turns a node's model and metrics into what the catalog's
``MlflowModelTrackingDataset`` (flavor ``mlflow.keras``, registered as ``<model>_keras``),
``MlflowMetricsHistoryDataset`` and ``MlflowArtifactDataset`` entries save;
``keras_signature`` is the signature ``hooks.ModelRunsHook`` gives a logged model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_classifiers.tracking import metric_history

logger = logging.getLogger(__name__)


def inference_model(model: Any) -> Any:
    """``model`` without its training-only augmentation, for the logged copy.

    ``RandomAugment`` is the identity at inference; without it a from-scratch model holds
    only Keras' own layers and loads with plain ``mlflow.keras.load_model`` anywhere. Other
    custom parts (transfer learning, GoogLeNet's heads) stay: load those with
    ``image_classifiers.core.models.load_model_file``. The layers are shared, not copied.
    """
    import keras

    from image_classifiers.core.layers import RandomAugment
    from image_classifiers.core.models import AuxiliaryHeadsModel

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
