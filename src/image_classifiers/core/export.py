"""Export a Keras classifier (SavedModel, ONNX, LiteRT; float32, float16, int8) and score each
file with its own runtime (TensorFlow, onnxruntime, the LiteRT interpreter of ai-edge-litert).

Keras writes every format from the TensorFlow backend (``model.export``); ONNX int8 is
onnxruntime's static quantizer on the float ONNX file, LiteRT int8 the TFLite converter, both
calibrated on a representative set of training images. ``EXPORTERS`` maps a format to its
writer, so a caller may add or wrap one (the tests write a file no runtime can load).
"""

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

#: Each format's file name under a model's export folder (SavedModel is a folder).
FILES = {
    "saved_model": "saved_model",
    "onnx": "model.onnx",
    "onnx_int8": "model_int8.onnx",
    "litert": "model.tflite",
    "litert_float16": "model_float16.tflite",
    "litert_int8": "model_int8.tflite",
}
#: What a verified file is usable for: the runtime that loads it.
RUNTIMES = {
    "saved_model": "tensorflow",
    "onnx": "onnxruntime",
    "onnx_int8": "onnxruntime",
    "litert": "ai-edge-litert",
    "litert_float16": "ai-edge-litert",
    "litert_int8": "ai-edge-litert",
}
Predict = Callable[[np.ndarray], np.ndarray]


def check_backend() -> None:
    """Keras writes SavedModel, ONNX and LiteRT from the TensorFlow backend only."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"Exporting needs the TensorFlow backend, but KERAS_BACKEND is "
            f"'{keras.backend.backend()}'. Run it with KERAS_BACKEND=tensorflow (the default)."
        )


def _representative(images: np.ndarray | None, fmt: str) -> np.ndarray:
    if images is None or len(images) == 0:
        raise ValueError(
            f"{fmt} needs a representative set of training images to calibrate int8 "
            "(export.representative_size > 0 and a non-empty train_set)."
        )
    return np.asarray(images, dtype=np.float32)


def _write_onnx(model: keras.Model, path: Path, representative: np.ndarray | None) -> None:
    model.export(str(path), format="onnx", verbose=False)


def _write_onnx_int8(model: keras.Model, path: Path, representative: np.ndarray | None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    images = _representative(representative, "onnx_int8")

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.rows = iter(images[i : i + 1] for i in range(len(images)))
            self.name = name

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {self.name: row}

    with tempfile.TemporaryDirectory(prefix="onnx-float-") as tmp:
        float_path = Path(tmp) / "model.onnx"
        _write_onnx(model, float_path, None)
        name = _onnx_session(float_path).get_inputs()[0].name
        quantize_static(str(float_path), str(path), Reader(name))


def _litert_writer(kind: str) -> Callable[[keras.Model, Path, np.ndarray | None], None]:
    def write(model: keras.Model, path: Path, representative: np.ndarray | None) -> None:
        import tensorflow as tf  # the TFLite converter's options are TensorFlow's

        options: dict[str, Any] = {}
        if kind == "float16":
            options = {"target_spec": {"supported_types": [tf.float16]}}
        elif kind == "int8":
            images = _representative(representative, "litert_int8")
            options = {"representative_dataset": lambda: ([i[None]] for i in images)}
        if options:
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        model.export(str(path), format="litert", verbose=False, **options)

    return write


def _write_saved_model(model: keras.Model, path: Path, representative: np.ndarray | None) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


#: format -> writer(model, path, representative images or None).
EXPORTERS: dict[str, Callable[[keras.Model, Path, np.ndarray | None], None]] = {
    "saved_model": _write_saved_model,
    "onnx": _write_onnx,
    "onnx_int8": _write_onnx_int8,
    "litert": _litert_writer("float32"),
    "litert_float16": _litert_writer("float16"),
    "litert_int8": _litert_writer("int8"),
}


def _onnx_session(path: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def load_runtime(fmt: str, path: Path) -> Predict:
    """``predict(images float32 (N, H, W, C)) -> outputs`` of the exported file, in its own
    runtime; raises whatever the runtime raises for a file it cannot load."""
    if RUNTIMES[fmt] == "onnxruntime":
        session = _onnx_session(path)
        name = session.get_inputs()[0].name
        return lambda images: session.run(None, {name: images})[0]
    if RUNTIMES[fmt] == "ai-edge-litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.allocate_tensors()

        def run(images: np.ndarray) -> np.ndarray:
            if tuple(interpreter.get_input_details()[0]["shape"]) != images.shape:
                interpreter.resize_tensor_input(given["index"], images.shape)
                interpreter.allocate_tensors()
            interpreter.set_tensor(given["index"], images)
            interpreter.invoke()
            return interpreter.get_tensor(output["index"])

        return run
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its functions need its variables
    return lambda images: np.asarray(loaded.serve(tf.constant(images)))


def _batches(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield np.asarray(images[start : start + size], dtype=np.float32)


def runtime_probabilities(predict: Predict, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) as ``core.training.predict_probabilities`` gives them."""
    outputs = np.concatenate([predict(batch) for batch in _batches(images, batch_size)])
    outputs = outputs.astype(np.float32).reshape(len(images), -1)
    return np.concatenate([1 - outputs, outputs], axis=-1) if outputs.shape[1] == 1 else outputs


def latency_ms(predict: Predict, image: np.ndarray, runs: int) -> dict[str, float]:
    """Batch-1 latency (p50, p95) in milliseconds over ``runs`` calls after one warm-up."""
    batch = np.asarray(image[None], dtype=np.float32)
    predict(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(batch)
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"latency_p50_ms": round(float(p50), 3), "latency_p95_ms": round(float(p95), 3)}


def input_contract(model: keras.Model, resample: str) -> dict[str, Any]:
    """What every exported file takes: RGB pixel values 0-255 (not rescaled) as float32."""
    (tensor,) = model.inputs
    return {
        "name": tensor.name,
        "shape": [-1 if d is None else int(d) for d in tensor.shape],
        "dtype": str(tensor.dtype),
        "values": "RGB pixel values 0-255; the model rescales them itself",
        "resize": f"{resample} (PIL), to exactly height x width, aspect ratio not kept",
    }


def size_bytes(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (SavedModel)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)
