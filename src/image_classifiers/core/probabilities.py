"""What a classifier's probabilities become once predicted: temperature scaling and labels.

NumPy only: the served models (``serving``, and ``onnx_serving`` without Keras) apply them too.
"""

import numpy as np


def apply_temperature(probabilities: np.ndarray, temperature: float | None) -> np.ndarray:
    """``softmax(log p / T)``: temperature scaling of predicted probabilities (the log of a
    softmax output is its logits up to a constant); T of 1 or None changes nothing. Numpy
    only, so the serving environment (no SciPy) can apply it."""
    if temperature is None or temperature == 1.0:
        return probabilities
    scaled = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    scaled = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(probabilities.dtype)


def predicted_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class indices; with two classes the second wins above ``threshold``."""
    if probabilities.shape[-1] == 2:
        return (probabilities[:, 1] > threshold).astype(np.int32)
    return np.argmax(probabilities, axis=-1).astype(np.int32)
