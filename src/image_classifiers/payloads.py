"""What the served models take and give, the same for the Keras (``serving``) and the ONNX
(``onnx_serving``) pyfunc: a column of base64-encoded image files in; one probability column
per class and the label out; a bad row is an HTTP 400 naming it. Imports no ML framework."""

import base64
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from image_classifiers.core.images import decode_image
from image_classifiers.core.probabilities import predicted_labels

IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"
#: How to call the model, for a request that holds no images.
REQUEST_HELP = (
    f'Send JSON {{"dataframe_split": {{"columns": ["{IMAGE_COLUMN}"], "data": '
    f'[["<base64 file>"], ...]}}}}, or text/csv whose first line is the header '
    f"'{IMAGE_COLUMN}' and each further line one base64-encoded image file."
)


def probability_column(class_name: str) -> str:
    """Output column of one class's probability, e.g. ``probability_cat``."""
    return f"probability_{class_name}"


def probability_frame(
    probabilities: np.ndarray, classes: list[str], threshold: float = 0.5
) -> pd.DataFrame:
    """One row per image: ``probability_<class>`` for every class, then ``label``."""
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(
            f"The model predicts {probabilities.shape[-1]} classes but {len(classes)} class "
            f"names were given ({classes}); pass the classes the model was trained on."
        )
    frame = pd.DataFrame(
        probabilities.astype(np.float64), columns=[probability_column(c) for c in classes]
    )
    names = np.asarray(classes, dtype=object)
    frame[LABEL_COLUMN] = names[predicted_labels(probabilities, threshold)] if len(frame) else []
    return frame


def decode_payload(value: Any, image_size: tuple[int, int]) -> np.ndarray:
    """One request cell (base64 text, a ``data:`` URL or raw bytes) -> ``(H, W, 3)`` uint8."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:  # data:image/jpeg;base64,<...>
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError as exc:  # binascii.Error is one
            raise ValueError(f"not valid base64 ({exc})") from exc
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise ValueError(f"expected a base64 string, got {type(value).__name__}")
    return decode_image(data, image_size)  # UnreadableImageError: a ValueError


def decode_request(model_input: pd.DataFrame, image_size: tuple[int, int]) -> np.ndarray:
    """The request's images ``(N, H, W, 3)`` uint8; any bad row is an HTTP 400 naming it."""
    # The column is optional in the signature so that a request without it (a CSV
    # without its header line) gets this message rather than MLflow's.
    if IMAGE_COLUMN not in model_input or model_input.empty:
        raise MlflowException.invalid_parameter_value(
            f"The request holds no '{IMAGE_COLUMN}' values. {REQUEST_HELP}"
        )
    values = model_input[IMAGE_COLUMN].tolist()
    images = np.empty((len(values), *image_size, 3), dtype=np.uint8)
    problems = []
    for row, value in enumerate(values):
        try:
            images[row] = decode_payload(value, image_size)
        except ValueError as exc:
            problems.append(f"row {row}: {exc}")
    if problems:
        shown, more = "; ".join(problems[:5]), len(problems) - 5
        raise MlflowException.invalid_parameter_value(
            f"{len(problems)} of {len(values)} '{IMAGE_COLUMN}' values are not "
            f"base64-encoded images: {shown}{f'; and {more} more' if more > 0 else ''}. "
            "Send each file's bytes base64-encoded (e.g. base64.b64encode(open(path, "
            "'rb').read()).decode())."
        )
    return images
