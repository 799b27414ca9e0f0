"""Serve a classifier: an MLflow pyfunc that takes base64 JPEG/PNG files, not pixel arrays.

It decodes with the data pipeline's ``decode_image`` and the model rescales itself, so what is
served is what was trained; a bad request is ``INVALID_PARAMETER_VALUE`` (HTTP 400), a failure
of the model a 500 whose traceback stays in the server's log.
"""

import base64
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from PIL import Image

from image_classifiers.payloads import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    decode_request,
    probability_column,
    probability_frame,
)

KERAS_ARTIFACT = "keras_model"  # the .keras file among the pyfunc's artifacts
#: Keras backend of the served model's environment (see :func:`serving_requirements`).
SERVING_BACKEND = "jax"
#: Registered-model tag marking a name whose versions all take encoded images.
SERVING_TAG = "image_classifiers.input"
SERVING_TAG_VALUE = "encoded_images"

logger = logging.getLogger(__name__)
#: The model card that goes along with a logged classifier (``log_classifier``).
MODEL_CARD_ARTIFACT = "model_card"
#: The temperature file training writes beside ``<model>.keras``.
CALIBRATION_SUFFIX = ".calibration.json"


def model_image_size(model: Any, fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(height, width)`` the Keras model takes; ``fallback`` if its input is resizable."""
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        if fallback is None:
            raise ValueError(
                "The model accepts any image size; give the size to resize images to "
                "(image_size: [height, width])."
            )
        return tuple(fallback)
    return int(height), int(width)


class ModelNotFoundError(LookupError):
    """The registry has no model, version or alias at a URI (the message says what to do)."""


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """Encoded images in, probabilities and labels out; ``model_config`` gives the classes."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        # The backend the model was logged for (a fresh serving environment has it), unless
        # Keras is imported or the caller chose one; backend, module and package share a name.
        backend = config.get("keras_backend")
        if backend and "keras" not in sys.modules and importlib.util.find_spec(backend):
            os.environ.setdefault("KERAS_BACKEND", backend)
        from image_classifiers.core.models import load_model_file

        self.model = load_model_file(context.artifacts[KERAS_ARTIFACT], compile=False)
        self.classes = [str(c) for c in config["classes"]]
        self.threshold = float(config.get("threshold", 0.5))
        self.temperature = config.get("temperature")  # fitted on the validation split
        self.batch_size = int(config.get("batch_size", 32))
        self.image_size = model_image_size(self.model, config.get("image_size"))
        # The server calls predict from several threads, and Keras' predict is not thread-safe
        # (under JAX concurrent calls break the model for good): one inference at a time.
        self.lock = threading.Lock()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from image_classifiers.core.probabilities import apply_temperature
        from image_classifiers.core.training import predict_probabilities

        images = decode_request(model_input, self.image_size)
        try:
            with self.lock:
                probabilities = predict_probabilities(self.model, images, self.batch_size)
        except Exception as exc:  # MLflow would answer with the traceback and server paths
            logger.exception("The model failed on a request of %d images.", len(images))
            raise MlflowException(
                f"The model failed on this request ({type(exc).__name__}); the server's log "
                "has the details."
            ) from exc
        probabilities = apply_temperature(probabilities, self.temperature)
        return probability_frame(probabilities, self.classes, self.threshold)


def serving_requirements(backend: str = SERVING_BACKEND) -> list[str]:
    """pip requirements of the served model, pinned to what is installed here: no Kedro,
    ``mlflow-skinny`` and JAX instead of MLflow and TensorFlow (the ``.keras`` file is the same
    for every backend), so a fresh environment installs in about a minute."""
    requirements = []
    for package in ("mlflow-skinny", "keras", backend, "pillow", "pandas", "numpy"):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # e.g. JAX, an optional extra: whatever pip finds
            requirements.append(package)
    return requirements


def log_classifier(
    keras_path: str | Path,
    classes: list[str],
    *,
    name: str = "model",
    registered_model_name: str | None = None,
    threshold: float = 0.5,
    batch_size: int = 32,
    temperature: float | None = None,
    onnx_path: str | Path | None = None,
    model_card: str | None = None,
) -> Any:
    """Log a ``.keras`` file as a serving pyfunc in the active run (and register it); the
    package's source goes along (``code_paths``) for ``mlflow models serve`` to import.
    With a verified ``onnx_path`` it serves that over onnxruntime (``onnx_serving``, no
    TensorFlow); the ``.keras`` file still goes along for :func:`load_classifier`, and the
    ``model_card`` text, if any, as ``model_card.md``."""
    classes = [str(c) for c in classes]
    outputs = [ColSpec("double", probability_column(c)) for c in classes]
    example = io.BytesIO()  # a small gray JPEG: how to call the model, in the MLflow UI
    Image.new("RGB", (16, 16), (128, 128, 128)).save(example, format="JPEG")
    python_model, requirements = ImageClassifierModel(), serving_requirements()
    artifacts = {KERAS_ARTIFACT: str(keras_path)}
    if onnx_path is not None:
        from image_classifiers import onnx_serving  # onnxruntime: imported only for ONNX

        python_model = onnx_serving.OnnxClassifierModel()
        requirements = onnx_serving.requirements()
        artifacts[onnx_serving.ONNX_ARTIFACT] = str(onnx_path)
    # The card's file lives only until MLflow has copied it, never in the caller's folder.
    with tempfile.TemporaryDirectory(prefix="model-card-") as folder:
        if model_card is not None:
            card = Path(folder) / "model_card.md"
            card.write_text(model_card, encoding="utf-8")
            artifacts[MODEL_CARD_ARTIFACT] = str(card)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            artifacts=artifacts,
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=ModelSignature(
                inputs=Schema([ColSpec("string", IMAGE_COLUMN, required=False)]),
                outputs=Schema([*outputs, ColSpec("string", LABEL_COLUMN)]),
            ),
            model_config={
                "classes": classes,
                "threshold": float(threshold),
                "batch_size": int(batch_size),
                "keras_backend": SERVING_BACKEND,
                **({"temperature": float(temperature)} if temperature else {}),
            },
            pip_requirements=requirements,
            input_example=pd.DataFrame(
                {IMAGE_COLUMN: [base64.b64encode(example.getvalue()).decode()]}
            ),
            registered_model_name=registered_model_name,
        )
    if registered_model_name:
        mlflow.MlflowClient().set_registered_model_tag(
            registered_model_name, SERVING_TAG, SERVING_TAG_VALUE
        )
    return info


@dataclass
class LoadedClassifier:
    """A Keras classifier and what is known about it from where it was loaded."""

    model: Any
    source: str
    classes: list[str] | None = None
    threshold: float | None = None
    temperature: float | None = None  # calibration.json's, see calibration_temperature


def load_classifier(source: str | Path) -> LoadedClassifier:
    """The Keras model of a ``.keras`` file or a model URI, with the classes and threshold of
    one logged by :func:`log_classifier` (not of a Keras-flavor one) and its temperature (the
    pyfunc's, the calibration file beside a ``.keras`` file, a Keras model run's metric)."""
    from image_classifiers.core.models import load_model_file

    text = str(source)
    if ":/" not in text:  # a local file, not a URI
        path = Path(text).expanduser()
        calibration = path.with_suffix(CALIBRATION_SUFFIX)  # written beside it by training
        temperature = (
            json.loads(calibration.read_text())["temperature"] if calibration.is_file() else None
        )
        model = load_model_file(text, compile=False)
        return LoadedClassifier(model, text, temperature=temperature)

    with tempfile.TemporaryDirectory(prefix="classifier-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp))
        except MlflowException as exc:
            # A missing model is RESOURCE_DOES_NOT_EXIST, a missing alias or version is not.
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message.lower():
                raise ModelNotFoundError(
                    f"No model at '{text}' in the registry at {mlflow.get_registry_uri()}: "
                    f"{exc.message}. Check the name and alias (mlflow ui lists them), set "
                    "predict.model to a .keras file or another version, or train one first "
                    "and make it the champion: kedro run --pipelines=retrain "
                    '--params="retrain.force=true".'
                ) from exc
            raise
        keras_files = sorted(local.rglob("*.keras"))
        if not keras_files:
            raise ValueError(
                f"The model at '{text}' holds no .keras file; it was not logged by this "
                "project (log_classifier or the Keras flavor)."
            )
        model = load_model_file(keras_files[0], compile=False)
        # The model_config of a pyfunc logged by log_classifier ({} for the Keras flavor).
        logged = mlflow.models.Model.load(str(local))
        config = logged.flavors.get("python_function", {}).get("config") or {}
    temperature = config.get("temperature")
    if "classes" not in config and logged.run_id:  # Keras flavor: its run's test metrics
        temperature = mlflow.MlflowClient().get_run(logged.run_id).data.metrics.get("temperature")
    return LoadedClassifier(
        model, text, config.get("classes"), config.get("threshold"), temperature
    )
