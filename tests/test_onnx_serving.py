"""The ONNX-backed serving pyfunc: registered by ``log_classifier(..., onnx_path=...)``, it
answers like the Keras one (same payload, same 400s) from an environment without TensorFlow,
Keras, JAX or torch; retrain registers it, and may require it for a promotion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from test_serving import (  # the Keras pyfunc's tests: same store, images and HTTP checks
    CLASSES,
    b64,
    encoded_image,
    expected_probabilities,
    pyenv_has_this_python,
    serve_and_check,
    tracking_store,  # noqa: F401  (a fixture)
)

from image_classifiers.core import export as core_export
from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import EvaluationParams, ExportParams, RetrainParams
from image_classifiers.core.probabilities import apply_temperature, predicted_labels
from image_classifiers.core.training import predict_probabilities
from image_classifiers.onnx_serving import PACKAGES
from image_classifiers.pipelines.export.nodes import export_formats
from image_classifiers.pipelines.retrain.nodes import register_challenger
from image_classifiers.serving import load_classifier, log_classifier

NAME = "tiny_onnx"
NOT_SERVED = ("tensorflow", "keras", "jax", "torch")


@pytest.fixture(scope="module")
def test_set(keras_model):
    images = keras.random.randint((8, 32, 32, 3), 0, 256, seed=1).numpy().astype("uint8")
    labels = predicted_labels(predict_probabilities(keras_model, images))
    return {"images": images, "labels": labels, "classes": CLASSES}


@pytest.fixture(scope="module")
def keras_model():
    keras.utils.set_random_seed(0)
    return build_classifier("simple_convnet", (32, 32, 3), 2, filters=(4,), dropout=0.0)


@pytest.fixture(scope="module")
def onnx_champion(tracking_store, keras_model, test_set, tmp_path_factory):  # noqa: F811
    """The tiny model's verified ONNX export, registered as ``NAME``'s champion."""
    folder = tmp_path_factory.mktemp("onnx")
    keras_model.save(folder / "tiny.keras")
    export = ExportParams(formats=["onnx"], output_dir=str(folder), latency_runs=1)
    result = export_formats(keras_model, "tiny", test_set, export)["formats"]["onnx"]
    assert result["status"] == "ok", result
    with mlflow.start_run():
        info = log_classifier(
            folder / "tiny.keras", CLASSES, registered_model_name=NAME, onnx_path=result["file"]
        )
    mlflow.MlflowClient().set_registered_model_alias(
        NAME, "champion", info.registered_model_version
    )
    return keras_model


def test_the_onnx_pyfunc_answers_like_the_keras_one(onnx_champion):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    jpeg, png = encoded_image(60), encoded_image(200, size=(20, 64), fmt="PNG")
    result = pyfunc.predict(pd.DataFrame({"image": [b64(jpeg), b64(png)]}))
    expected = expected_probabilities(onnx_champion, [jpeg, png])
    pd.testing.assert_frame_equal(
        result.drop(columns="label"),
        pd.DataFrame(expected.astype(float), columns=["probability_cat", "probability_dog"]),
        atol=1e-5,
    )
    assert result["label"].tolist() == [CLASSES[int(p > 0.5)] for p in expected[:, 1]]
    with pytest.raises(MlflowException, match=r"1 of 2 .* row 1: .*not an image format") as error:
        pyfunc.predict(pd.DataFrame({"image": [b64(jpeg), b64(b"\x00\x01 not a jpeg")]}))
    assert error.value.get_http_status_code() == 400
    # Its requirements are what it imports; the .keras file still goes along for predict.
    listed = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{NAME}@champion")).read_text()
    assert {line.split("==")[0] for line in listed.split()} == set(PACKAGES)
    assert load_classifier(f"models:/{NAME}@champion").classes == CLASSES


def test_the_onnx_pyfunc_applies_the_model_temperature(onnx_champion, test_set, tmp_path):
    """Served over ONNX or Keras, a calibrated model answers with calibrated probabilities."""
    onnx = tmp_path / "exported" / "tiny" / "model.onnx"
    export = ExportParams(formats=["onnx"], output_dir=str(tmp_path / "exported"), latency_runs=1)
    jpeg = encoded_image(90)
    images = pd.DataFrame({"image": [b64(jpeg)]})
    onnx_champion.save(tmp_path / "tiny.keras")
    assert export_formats(onnx_champion, "tiny", test_set, export)["formats"]["onnx"]["file"]
    answers = {}
    for served, path in (("keras", None), ("onnx", onnx)):
        with mlflow.start_run():
            info = log_classifier(
                tmp_path / "tiny.keras", CLASSES, temperature=4.0, onnx_path=path, name=served
            )
        answers[served] = mlflow.pyfunc.load_model(info.model_uri).predict(images)
    expected = apply_temperature(expected_probabilities(onnx_champion, [jpeg]), 4.0)
    for served, answer in answers.items():
        dog = answer["probability_dog"].to_numpy()
        assert dog == pytest.approx(expected[:, 1], abs=1e-5), served


def test_exporting_a_missing_alias_says_so(onnx_champion):
    with pytest.raises(LookupError, match=f"No model at 'models:/{NAME}@nope'"):
        load_classifier(f"models:/{NAME}@nope")


@pytest.mark.slow  # a child process imports MLflow (~10 s here)
def test_the_onnx_pyfunc_imports_no_training_stack():
    code = (
        "import sys, image_classifiers.onnx_serving\n"
        f"found = sorted({{m.split('.')[0] for m in sys.modules}} & {set(NOT_SERVED)!r})\n"
        "assert not found, found\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_retrain_serves_the_onnx_export_and_may_require_it(
    keras_model,
    test_set,
    tracking_store,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    delivery = {"classes": CLASSES, "run_id": "r1", "added": [], "rejected": [], "duplicates": []}
    decision = {"action": "promote", "reason": "no champion yet", "metric": "test_accuracy"}
    decision |= {"challenger_score": 1.0, "champion_score": None, "champion_version": None}
    decision["challenger_metrics"] = {"test_accuracy": 1.0}  # as decide_promotion makes it
    decision["calibration"] = {"temperature": 1.0, "calibrated": False}

    def register(**retrain):
        with mlflow.start_run():
            return register_challenger(
                challengers={"tiny": keras_model},
                decisions={"tiny": decision},
                model_cards={"tiny": "# tiny\n\nA model card."},
                delivery=delivery,
                test_set=test_set,
                evaluation=EvaluationParams(),
                export=ExportParams(latency_runs=1),
                retrain=RetrainParams(registered_model_name="retrained", **retrain),
            )["tiny"]

    served = register()
    assert served["action"] == "promote" and served["served_as"] == "onnx"

    def unloadable(model, path, representative):
        path.write_bytes(b"not an onnx model")

    monkeypatch.setitem(core_export.EXPORTERS, "onnx", unloadable)
    kept = register(require_export=True)
    assert kept["action"] == "keep" and kept["served_as"] == "keras"
    assert "retrain.require_export: no verified ONNX (tiny as onnx: " in kept["reason"]
    aliases = mlflow.MlflowClient().get_registered_model("retrained").aliases
    assert str(aliases["champion"]) == served["version"] != kept["version"]


@pytest.mark.slow
@pytest.mark.skipif(not pyenv_has_this_python(), reason="needs pyenv with this Python")
def test_a_fresh_virtualenv_serves_the_onnx_champion(onnx_champion, tracking_store, tmp_path):  # noqa: F811
    """``mlflow models serve`` in a new virtualenv of the logged requirements: a JPEG, a PNG
    and a broken payload (400); TensorFlow, Keras, JAX and torch are not in it."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "KERAS_BACKEND"}}
    env["MLFLOW_ENV_ROOT"] = str(tmp_path / "envs")
    serve_and_check(onnx_champion, tracking_store, tmp_path, "virtualenv", env, name=NAME)
    (python,) = (tmp_path / "envs").glob("*/bin/python")
    code = f"import importlib.util as u; print([m for m in {NOT_SERVED!r} if u.find_spec(m)])"
    result = subprocess.run(
        [python, "-c", code], check=False, capture_output=True, text=True, env=env
    )
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
