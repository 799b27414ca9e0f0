"""Serve a classifier's verified ONNX export with onnxruntime: no TensorFlow, Keras or JAX.

Same request and answers as ``serving.ImageClassifierModel`` (``payloads``: base64 images in,
probabilities and labels out, HTTP 400 for a bad row); ``serving.log_classifier(...,
onnx_path=...)`` logs it.
"""

from importlib.metadata import version
from typing import Any

import mlflow
import numpy as np
import onnxruntime
import pandas as pd

from image_classifiers.core.probabilities import apply_temperature
from image_classifiers.payloads import decode_request, probability_frame

ONNX_ARTIFACT = "onnx_model"
#: What this module imports (mlflow-skinny provides ``mlflow``), so all a server installs.
PACKAGES = ("mlflow-skinny", "onnxruntime", "numpy", "pandas", "pillow")


def requirements() -> list[str]:
    """The served model's pip requirements, pinned to the versions installed here."""
    return [f"{package}=={version(package)}" for package in PACKAGES]


class OnnxClassifierModel(mlflow.pyfunc.PythonModel):
    """Encoded images in, probabilities and labels out; ``model_config`` gives the classes."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        self.session = onnxruntime.InferenceSession(
            context.artifacts[ONNX_ARTIFACT], providers=["CPUExecutionProvider"]
        )
        (given,) = self.session.get_inputs()
        self.input_name = given.name
        height, width = given.shape[1:3]
        if not isinstance(height, int) or not isinstance(width, int):  # any-size model
            height, width = config["image_size"]
        self.image_size = (int(height), int(width))
        self.classes = [str(c) for c in config["classes"]]
        self.threshold = float(config.get("threshold", 0.5))
        self.temperature = config.get("temperature")  # fitted on the validation split
        self.batch_size = int(config.get("batch_size", 32))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        images = decode_request(model_input, self.image_size).astype(np.float32)
        outputs = [
            self.session.run(None, {self.input_name: images[start : start + self.batch_size]})[0]
            for start in range(0, len(images), self.batch_size)
        ]
        probabilities = np.concatenate(outputs) if outputs else np.zeros((0, len(self.classes)))
        if probabilities.shape[-1] == 1:  # a sigmoid head: P(second class)
            probabilities = np.concatenate([1 - probabilities, probabilities], axis=-1)
        probabilities = apply_temperature(probabilities, self.temperature)
        return probability_frame(probabilities, self.classes, self.threshold)
