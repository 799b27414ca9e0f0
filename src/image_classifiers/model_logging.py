"""Logging Keras models to MLflow: the catalog dataset and what it logs with each model.

``MlflowKerasModelDataset`` is a ``.keras`` file like ``KerasModelDataset`` that also logs
the model with MLflow's Keras flavor, an input/output signature and a summary, and
registers it in the Model Registry. kedro-mlflow's ``MlflowModelTrackingDataset`` can
neither keep the local file the rest of the pipeline reads nor take a signature from YAML.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mlflow
import numpy as np
from kedro.io import DatasetError
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_classifiers.datasets import KerasModelDataset
from image_classifiers.serving import is_serving_model
from image_classifiers.tracking import active_run_id

logger = logging.getLogger(__name__)

# The Python distribution that provides each Keras backend, for the logged model's
# requirements.txt.
_BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def keras_signature(model: Any) -> ModelSignature:
    """Tensor signature of a single-input Keras model: batch dimension -1, shapes from the model.

    Built from the model's shapes rather than inferred from a prediction, so logging a model
    costs no forward pass.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Expected a model with one input and one output, got {len(model.inputs)} inputs "
            f"and {len(model.outputs)} outputs."
        )
    (inputs,), (outputs,) = model.inputs, model.outputs

    def spec(tensor: Any, name: str | None) -> TensorSpec:
        shape = (-1, *(-1 if dim is None else int(dim) for dim in tensor.shape[1:]))
        return TensorSpec(np.dtype(tensor.dtype), shape, name)

    return ModelSignature(
        inputs=Schema([spec(inputs, getattr(inputs, "name", None) or "image")]),
        outputs=Schema([spec(outputs, None)]),
    )


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged Keras model: Keras and the active backend.

    Given explicitly because MLflow's inference of requirements re-loads the model in a
    subprocess, which cannot import the project's custom layers and only costs time.
    """
    import keras

    requirements = []
    for package in ("keras", _BACKEND_PACKAGES.get(keras.backend.backend())):
        if package is None:
            continue
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def inference_model(model: Any) -> Any:
    """``model`` without its training-only augmentation layer, for the logged copy.

    ``RandomAugment`` is the identity at inference, so the outputs are the same; without it a
    from-scratch model holds only Keras' own layers and loads with plain
    ``mlflow.keras.load_model`` anywhere (Keras rebuilds a custom class only if its module
    was imported, and never imports one itself). The other layers are shared, not copied.
    Models with other custom parts (transfer learning's layers, GoogLeNet's auxiliary heads)
    are logged as they are: load those with ``image_classifiers.models.load_model_file`` or
    ``image_classifiers.serving.load_classifier``.
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


def log_keras_model(
    model: Any, registered_model_name: str | None = None, artifact_path: str = "model"
) -> None:
    """Log ``model`` to the active MLflow run as ``MlflowKerasModelDataset`` does on save.

    The Keras flavor (without training-only augmentation, see :func:`inference_model`), an
    input/output signature, ``model_summary.txt``, the metric ``param_count``, and a new
    version of ``registered_model_name`` (none when it is empty).

    Raises:
        DatasetError: If ``registered_model_name`` is a serving model's name (its versions
            take encoded images, a Keras-flavor model takes pixel arrays).
    """
    if registered_model_name and is_serving_model(registered_model_name):
        # Every version under a serving name must take encoded images (serving.py).
        raise DatasetError(
            f"'{registered_model_name}' is the name of a serving model (its "
            "versions take encoded images); a Keras-flavor model takes pixel arrays and "
            "goes under a name of its own, e.g. '<model>_keras' (registered_model_name "
            "in the catalog). The .keras file is saved; nothing was logged."
        )
    mlflow.log_text(model_summary(model), "model_summary.txt")
    param_count = int(model.count_params())
    mlflow.log_metric("param_count", param_count)
    info = mlflow.keras.log_model(
        inference_model(model),
        name=artifact_path,
        signature=keras_signature(model),
        pip_requirements=model_requirements(),
        registered_model_name=registered_model_name,
        metadata={"custom_objects_module": "image_classifiers.layers"},
    )
    registered = (
        f" and registered as '{registered_model_name}' version {info.registered_model_version}"
        if registered_model_name
        else ""
    )
    logger.info("Logged model %s (%s parameters)%s.", info.model_uri, param_count, registered)


class MlflowKerasModelDataset(KerasModelDataset):
    """A ``.keras`` file that is also logged to MLflow (Keras flavor) and registered.

    On save, after writing the local file: logs the model under the active run with an
    input/output signature, writes ``model_summary.txt`` and the parameter count
    (metric ``param_count``) to the run, and creates a new version of
    ``registered_model_name`` in the Model Registry (no registration when it is empty).
    Loading reads the local file, like ``KerasModelDataset``.

    The logged copy leaves out the training-only augmentation (:func:`inference_model`), so
    a from-scratch model loads with plain ``mlflow.keras.load_model``; transfer-learning
    models keep custom layers (``image_classifiers.models.load_model_file`` loads them).
    """

    def __init__(
        self,
        filepath: str,
        registered_model_name: str | None = None,
        artifact_path: str = "model",
        compile: bool = True,
        metadata: dict[str, Any] | None = None,
    ):
        """Create the dataset.

        Args:
            filepath: Path of the local ``.keras`` file.
            registered_model_name: Model Registry name to register each logged model under;
                ``None`` or empty logs the model without registering it.
            artifact_path: Name of the logged model within the run.
            compile: Restore the optimizer and loss when loading.
            metadata: Free-form metadata (used by kedro-viz), ignored by the dataset.
        """
        super().__init__(filepath=filepath, compile=compile, metadata=metadata)
        self._registered_model_name = registered_model_name or None
        self._artifact_path = artifact_path

    def save(self, data: Any) -> None:
        super().save(data)
        if active_run_id(f"model '{self._path}'") is None:
            return
        log_keras_model(data, self._registered_model_name, self._artifact_path)

    def _describe(self) -> dict[str, Any]:
        return {
            **super()._describe(),
            "registered_model_name": self._registered_model_name,
            "artifact_path": self._artifact_path,
        }
