"""What a trained Keras model leaves in MLflow through kedro-mlflow's catalog datasets
(``mlflow_records``), and the signature ``hooks.ModelRunsHook`` gives a logged model."""

import logging
from typing import Any

import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_classifiers.tracking import metric_history

logger = logging.getLogger(__name__)


def inference_model(model: Any) -> Any:
    """``model`` without its training-only augmentation (the identity at inference), so a
    from-scratch model loads with plain ``mlflow.keras.load_model``. Layers are shared."""
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


def summary_text(model: Any) -> str:
    """Keras' ``model.summary()`` as text."""
    summary: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: summary.append(text))
    return "\n".join(summary)


def mlflow_records(model: Any, metrics: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """Node: the model to log, its metrics and ``param_count`` as history, its summary text."""
    history = metric_history({**metrics, "param_count": int(model.count_params())})
    return inference_model(model), history, summary_text(model)


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
