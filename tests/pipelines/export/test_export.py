"""The export pipeline's node on a tiny model: every format verified by its own runtime, and
the ways a format is refused (unloadable file, accuracy loss, full disk, no int8 calibration
set, bad model source, another backend), each leaving no usable file behind."""

from __future__ import annotations

import errno
import os

import keras
import numpy as np
import pytest

from image_classifiers.core import export as core_export
from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import DecodeParams, EvaluationParams, ExportParams
from image_classifiers.core.probabilities import predicted_labels
from image_classifiers.core.training import predict_probabilities
from image_classifiers.pipelines.export.nodes import check_exports, export_formats, export_model

SIZE = 16
FORMATS = list(core_export.FILES)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny classifier (with a training-only augmentation layer), its file, and splits
    whose test labels are its own predictions (Keras scores 1.0 on them)."""
    keras.utils.set_random_seed(0)
    model = build_classifier(
        "simple_convnet", (SIZE, SIZE, 3), 2, {"horizontal_flip": True}, filters=(4,)
    )
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, SIZE, SIZE, 3), dtype=np.uint8)
    labels = predicted_labels(predict_probabilities(model, images[:12]))
    test_set = {"images": images[:12], "labels": labels, "classes": ["cat", "dog"]}
    train_set = {"images": images[12:], "labels": np.zeros(12, np.int32), "classes": ["a", "b"]}
    return model, path, train_set, test_set


def run_export(tiny, tmp_path, **options):
    _, path, train_set, test_set = tiny
    given = {"model": str(path), "output_dir": str(tmp_path / "exported"), "latency_runs": 3}
    export = ExportParams(**given | options)
    partitions, metrics, report = export_model(
        train_set, test_set, DecodeParams(image_size=(SIZE, SIZE)), EvaluationParams(), export
    )
    assert partitions == {"tiny/export_report": report}
    return report, metrics


def published(tmp_path):
    """The export folder's entries, less the SavedModel folder's own bookkeeping: the version
    its link points at and its writers' lock (atomic_folder)."""
    folder = tmp_path / "exported" / "tiny"
    if not folder.exists():
        return []
    link = folder / "saved_model"
    own = {os.readlink(link), ".saved_model.lock"} if link.is_symlink() else set()
    return sorted(p.name for p in folder.iterdir() if p.name not in own)


@pytest.fixture(scope="module")
def every_format(tiny, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("every")
    return (*run_export(tiny, tmp_path, max_accuracy_drop=0.1), tmp_path)


def test_every_format_is_published_once_its_runtime_agrees_with_keras(every_format):
    report, metrics, tmp_path = every_format
    assert list(report["formats"]) == FORMATS
    for fmt, result in report["formats"].items():
        assert result["status"] == "ok", (fmt, result)
        assert result["bytes"] > 0 and result["latency_p95_ms"] >= result["latency_p50_ms"] > 0
        assert result["test_accuracy"] >= 0.9 and result["accuracy_change"] >= -0.1
        assert metrics[f"export.{fmt}.test_accuracy"][0]["value"] == result["test_accuracy"]
    for fmt in ("saved_model", "onnx", "litert", "litert_float16"):  # float: same labels
        assert report["formats"][fmt]["agreement"] == 1.0
    # Only the published names: no temporary file, no half-written folder.
    assert published(tmp_path) == sorted(core_export.FILES.values())
    assert report["keras"] == {"test_accuracy": 1.0, "test_images": 12}
    assert report["input"]["name"] == "image" and report["input"]["dtype"] == "float32"
    assert report["input"]["shape"] == [-1, SIZE, SIZE, 3]
    assert report["input"]["resize"].startswith("bilinear")
    check_exports(report)


def test_a_file_its_runtime_cannot_load_is_refused_and_not_left(tiny, tmp_path, monkeypatch):
    write_onnx = core_export.EXPORTERS["onnx"]

    def corrupt(model, path, representative):
        write_onnx(model, path, representative)
        path.write_bytes(path.read_bytes()[:100])  # what a broken converter could leave

    monkeypatch.setitem(core_export.EXPORTERS, "onnx", corrupt)
    stale = tmp_path / "exported" / "tiny" / "model.onnx"  # an earlier run's file
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older model")

    report, _ = run_export(tiny, tmp_path, formats=["onnx", "litert"])

    onnx = report["formats"]["onnx"]
    assert onnx["status"] == "refused" and onnx["file"] is None
    assert onnx["reason"].startswith("tiny as onnx: ")
    assert report["formats"]["litert"]["status"] == "ok"
    assert published(tmp_path) == ["model.tflite"]
    check_exports(report)  # another format verified: the run succeeds, naming the refused

    report, _ = run_export(tiny, tmp_path, formats=["onnx"])
    with pytest.raises(ValueError, match="No format of 'tiny' verified: tiny as onnx"):
        check_exports(report)


class Erfinv(keras.layers.Layer):
    """tf2onnx keeps TensorFlow's Erfinv as it is: a file onnxruntime cannot load."""

    def call(self, x):
        return keras.ops.erfinv(keras.ops.clip(x, -0.5, 0.5))


def test_a_layer_onnx_cannot_express_is_refused_not_written(tiny, tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    hidden = Erfinv()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    export = ExportParams(formats=["onnx"], output_dir=str(tmp_path / "exported"))

    report = export_formats(model, "tiny", tiny[3], export)

    reason = report["formats"]["onnx"]["reason"]
    assert reason.startswith("tiny as onnx: ") and "Erfinv" in reason, reason
    assert published(tmp_path) == []


def test_a_file_that_loses_accuracy_is_refused(tiny, tmp_path, monkeypatch):
    def flipped(model, path, representative):  # the other class for every image
        inverted = keras.Model(model.inputs, 1.0 - model.outputs[0])
        write_litert(inverted, path, representative)

    write_litert = core_export.EXPORTERS["litert"]
    monkeypatch.setitem(core_export.EXPORTERS, "litert", flipped)
    report, _ = run_export(tiny, tmp_path, formats=["litert"], max_accuracy_drop=0.5)
    assert (
        "test accuracy 0.0000 is more than export.max_accuracy_drop (0.5) below Keras' "
        in (report["formats"]["litert"]["reason"])
    )
    assert published(tmp_path) == []


def test_a_full_disk_mid_export_leaves_nothing(tiny, tmp_path, monkeypatch):
    def disk_full(model, path, representative):
        path.write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(core_export.EXPORTERS, "onnx", disk_full)
    report, _ = run_export(tiny, tmp_path, formats=["onnx"])
    assert (
        "tiny as onnx: OSError: [Errno 28] No space left on device"
        in (report["formats"]["onnx"]["reason"])
    )
    assert published(tmp_path) == []  # not even the hidden temporary file


def test_int8_without_a_representative_set_is_refused(tiny, tmp_path):
    report, _ = run_export(
        tiny, tmp_path, formats=["onnx_int8", "litert_int8"], representative_size=0
    )
    for fmt in ("onnx_int8", "litert_int8"):
        assert (
            f"{fmt} needs a representative set of training images"
            in (report["formats"][fmt]["reason"])
        )
    assert published(tmp_path) == []


def test_a_source_that_is_no_keras_model_is_named(tiny, tmp_path):
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model")
    with pytest.raises(
        ValueError, match=r"Cannot export: '.*notes\.keras' is not a Keras model file"
    ):
        run_export(tiny, tmp_path, model=str(not_a_model))
    with pytest.raises(ValueError, match="Cannot export: No model file at"):
        run_export(tiny, tmp_path, model=str(tmp_path / "missing.keras"))


def test_another_backend_is_told_to_use_tensorflow(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(
        ValueError, match="needs the TensorFlow backend, but KERAS_BACKEND is 'jax'"
    ):
        run_export(tiny, tmp_path)
