"""The serving pyfunc: logged and registered in a temporary store, loaded back, and served
over HTTP by ``mlflow models serve``."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from image_classifiers import serving
from image_classifiers.core.images import decode_image
from image_classifiers.core.models import ModelFileError, build_classifier
from image_classifiers.core.probabilities import apply_temperature
from image_classifiers.core.training import predict_probabilities
from image_classifiers.errors import is_user_error

CLASSES = ["cat", "dog"]
MODEL_NAME = "tiny_classifier"
# Model load + TensorFlow import on 2 busy cores; a fresh virtualenv also installs the
# requirements (about a minute from PyPI here).
SERVER_START_TIMEOUT_S = 600


def encoded_image(value: int, size=(48, 40), fmt="JPEG") -> bytes:
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory):
    """A temporary SQLite tracking store and registry, restored afterwards."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous_uri = mlflow.get_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    # Artifacts under the temporary folder too (a SQLite store's default is ./mlruns).
    artifacts = (root / "artifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("serving-test", artifacts))
    yield uri
    mlflow.set_tracking_uri(previous_uri)
    if previous_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous_env


@pytest.fixture(scope="module")
def champion(tracking_store, tmp_path_factory):
    """A tiny 32x32 classifier logged as a pyfunc, registered, aliased ``champion``."""
    keras.utils.set_random_seed(0)
    model = build_classifier("simple_convnet", (32, 32, 3), 2, filters=(4,), dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    with mlflow.start_run():
        info = serving.log_classifier(path, CLASSES, registered_model_name=MODEL_NAME)
    mlflow.MlflowClient().set_registered_model_alias(
        MODEL_NAME, "champion", info.registered_model_version
    )
    return model


def expected_probabilities(model, encoded: list[bytes]) -> np.ndarray:
    images = np.stack([decode_image(data, (32, 32)) for data in encoded])
    return predict_probabilities(model, images)


def test_pyfunc_decodes_resizes_and_matches_keras(champion):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    jpeg, png = encoded_image(60), encoded_image(200, size=(20, 64), fmt="PNG")
    request = pd.DataFrame({"image": [b64(jpeg), "data:image/png;base64," + b64(png)]})

    result = pyfunc.predict(request)

    assert list(result.columns) == ["probability_cat", "probability_dog", "label"]
    expected = expected_probabilities(champion, [jpeg, png])
    np.testing.assert_allclose(
        result[["probability_cat", "probability_dog"]].to_numpy(), expected, atol=1e-5
    )
    assert result["label"].tolist() == [CLASSES[int(p > 0.5)] for p in expected[:, 1]]


@pytest.mark.parametrize(
    ("request_frame", "message"),
    [
        (pd.DataFrame({"image": ["%%% not base64 %%%"]}), "not valid base64"),
        (pd.DataFrame({"image": [b64(b"GIF89a but not really")]}), "Cannot decode image"),
        (pd.DataFrame({"image": [b64(b"")]}), "empty"),
        (pd.DataFrame({"picture": [b64(encoded_image(1))]}), "holds no 'image' values"),
        # A CSV without its header line: the one image became the column name.
        (pd.DataFrame({b64(encoded_image(1)): []}), "first line is the header 'image'"),
    ],
)
def test_bad_payloads_are_invalid_parameter_errors(champion, request_frame, message):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    with pytest.raises(MlflowException, match=None) as error:
        pyfunc.predict(request_frame)
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    assert error.value.get_http_status_code() == 400
    assert message in error.value.message


def test_bad_rows_are_named_in_the_message(champion):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    good = b64(encoded_image(5))
    with pytest.raises(MlflowException) as error:
        pyfunc.predict(pd.DataFrame({"image": [good, "???", good, b64(b"x")]}))
    assert "2 of 4" in error.value.message
    assert "row 1:" in error.value.message and "row 3:" in error.value.message


class OverlapProbe:
    """A Keras model's stand-in that counts how many threads are inside ``predict`` at once."""

    def __init__(self, model):
        self.model, self.inside, self.most = model, 0, 0
        self.counter = threading.Lock()

    def predict(self, *args, **kwargs):
        with self.counter:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.02)  # long enough for the other threads to arrive
        try:
            return self.model.predict(*args, **kwargs)
        finally:
            with self.counter:
                self.inside -= 1


def test_concurrent_requests_are_answered_one_inference_at_a_time(champion):
    """The scoring server calls predict from a thread per request; Keras' predict is not
    thread-safe (under JAX, concurrent calls break the model for good)."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    probe = OverlapProbe(champion)
    pyfunc.unwrap_python_model().model = probe
    encoded = [encoded_image(value) for value in range(0, 256, 16)]
    requests = [pd.DataFrame({"image": [b64(data)]}) for data in encoded]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(pyfunc.predict, requests))

    assert probe.most == 1
    answered = np.concatenate([r[["probability_cat", "probability_dog"]] for r in results])
    np.testing.assert_allclose(answered, expected_probabilities(champion, encoded), atol=1e-5)
    assert len(pyfunc.predict(requests[0])) == 1  # still answering


def test_a_failing_model_is_a_server_error_without_traceback(champion):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    pyfunc.unwrap_python_model().model = None  # predict raises AttributeError inside Keras code
    with pytest.raises(MlflowException) as error:
        pyfunc.predict(pd.DataFrame({"image": [b64(encoded_image(3))]}))
    assert error.value.get_http_status_code() == 500
    assert "model failed on this request (AttributeError)" in error.value.message
    assert "stack_trace" not in error.value.serialize_as_json()


def test_load_classifier_from_registry_and_file(champion, tmp_path):
    loaded = serving.load_classifier(f"models:/{MODEL_NAME}@champion")
    assert loaded.classes == CLASSES and loaded.threshold == 0.5
    assert loaded.model.input_shape == (None, 32, 32, 3)

    path = tmp_path / "m.keras"
    champion.save(path)
    from_file = serving.load_classifier(path)
    assert from_file.classes is None
    assert from_file.model.count_params() == champion.count_params()

    with pytest.raises(ModelFileError, match="No model file") as missing:
        serving.load_classifier(tmp_path / "missing.keras")
    assert is_user_error(missing.value)
    (tmp_path / "text.keras").write_text("not a model\n")
    with pytest.raises(ModelFileError, match="is not a Keras model file") as error:
        serving.load_classifier(tmp_path / "text.keras")
    assert is_user_error(error.value)  # one line under kedro run, no traceback
    with pytest.raises(LookupError, match="No model at"):
        serving.load_classifier(f"models:/{MODEL_NAME}@no_such_alias")
    with pytest.raises(LookupError, match="No model at"):
        serving.load_classifier("models:/no_such_model@champion")


def test_served_and_loaded_models_apply_the_temperature_they_were_logged_with(champion, tmp_path):
    path = tmp_path / "calibrated.keras"
    champion.save(path)
    with mlflow.start_run():
        serving.log_classifier(path, CLASSES, registered_model_name="calibrated", temperature=2.0)
    jpeg = encoded_image(90)
    served = mlflow.pyfunc.load_model("models:/calibrated/1").predict(
        pd.DataFrame({"image": [b64(jpeg)]})
    )
    expected = apply_temperature(expected_probabilities(champion, [jpeg]), 2.0)
    np.testing.assert_allclose(
        served[["probability_cat", "probability_dog"]].to_numpy(), expected, atol=1e-5
    )
    assert serving.load_classifier("models:/calibrated/1").temperature == 2.0
    # A .keras file: the calibration file training writes beside it, if any.
    assert serving.load_classifier(path).temperature is None
    path.with_suffix(".calibration.json").write_text(json.dumps({"temperature": 1.5}))
    assert serving.load_classifier(path).temperature == 1.5


def test_probability_frame_checks_classes():
    with pytest.raises(ValueError, match="predicts 2 classes but 3"):
        serving.probability_frame(np.zeros((1, 2)), ["a", "b", "c"])
    frame = serving.probability_frame(np.array([[0.1, 0.2, 0.7]]), ["a", "b", "c"])
    assert frame["label"].tolist() == ["c"]
    assert serving.probability_frame(np.zeros((0, 2)), CLASSES).shape == (0, 3)


@pytest.mark.slow  # a child process imports Keras and MLflow (~15-45 s here)
def test_the_served_code_imports_no_kedro():
    """What the pyfunc imports (the package travels in code_paths, Kedro does not): a module
    that pulls in Kedro breaks serving from a fresh environment (the slow test below)."""
    code = (
        "import sys\n"
        "import image_classifiers.serving, image_classifiers.core.training\n"
        "import image_classifiers.core.images\n"
        "import image_classifiers.core.models, image_classifiers.core.models.transfer\n"
        "found = sorted({m.split('.')[0] for m in sys.modules} & FORBIDDEN)\n"
        "assert not found, found\n"
    ).replace("FORBIDDEN", repr({"kedro", "kedro_datasets", "kedro_mlflow", "tensorflow"}))
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # the served model's backend
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


# ---- over HTTP -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until_up(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"mlflow models serve not up in {SERVER_START_TIMEOUT_S} s:\n{log.read_text()}")


def pyenv_has_this_python() -> bool:
    """Whether MLflow's virtualenv manager finds this Python in pyenv without building one."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return False
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    return (Path(root.stdout.strip()) / "versions" / platform.python_version()).is_dir()


def serve_and_check(
    champion, tracking_store, tmp_path, env_manager: str, env: dict, *, name: str = MODEL_NAME
) -> None:
    """``mlflow models serve`` the champion of ``name`` (``champion`` its Keras model); a JPEG,
    a PNG and broken payloads over HTTP."""
    port = free_port()
    log = tmp_path / "serve.log"
    command = [
        *(sys.executable, "-m", "mlflow", "models", "serve"),
        *("-m", f"models:/{name}@champion", "--env-manager", env_manager),
        *("-p", str(port), "-h", "127.0.0.1", "--workers", "1"),
    ]
    env = {**env, "MLFLOW_TRACKING_URI": tracking_store, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with log.open("w") as out:
        # Own process group: the server forks workers, and all of them must go at the end.
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_until_up(server, port, log)
        images = [encoded_image(40), encoded_image(220, size=(30, 50), fmt="PNG")]
        status, body = post(
            port, {"dataframe_split": {"columns": ["image"], "data": [[b64(i)] for i in images]}}
        )
        assert status == 200, body
        predictions = pd.DataFrame(body["predictions"])
        expected = expected_probabilities(champion, images)
        # The server may run another backend than this process (JAX in a fresh environment).
        np.testing.assert_allclose(predictions["probability_dog"], expected[:, 1], atol=1e-4)
        assert set(predictions["label"]) <= set(CLASSES)

        status, body = post(port, {"dataframe_records": [{"image": b64(b"\x00\x01 not a jpeg")}]})
        assert status == 400
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "not an image format" in body["message"]

        status, body = post(port, {"dataframe_records": [{"file": b64(images[0])}]})
        assert status == 400 and "holds no 'image' values" in body["message"]

        # Concurrent requests: all answered right, and the server still answers afterwards.
        encoded = [encoded_image(value) for value in range(0, 256, 16)]
        payloads = [{"dataframe_records": [{"image": b64(data)}]} for data in encoded]
        with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
            answers = list(pool.map(lambda payload: post(port, payload), payloads))
        assert [status for status, _ in answers] == [200] * len(payloads), answers
        answered = [body["predictions"][0]["probability_dog"] for _, body in answers]
        expected = expected_probabilities(champion, encoded)[:, 1]
        np.testing.assert_allclose(answered, expected, atol=1e-4)
        assert post(port, payloads[0])[0] == 200
    finally:
        # Gone already if it failed to start: that failure is the one to report.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(champion, tracking_store, tmp_path):
    serve_and_check(champion, tracking_store, tmp_path, "local", dict(os.environ))


@pytest.mark.slow
@pytest.mark.skipif(not pyenv_has_this_python(), reason="needs pyenv with this Python")
def test_a_fresh_virtualenv_from_the_logged_requirements_serves(champion, tracking_store, tmp_path):
    """What ``mlflow models serve`` does by default: a new virtualenv (pyenv's Python, pip
    installs the model's requirements.txt from PyPI), then the model's own code_paths. Nothing
    of this process leaks in: no PYTHONPATH, a new MLFLOW_ENV_ROOT."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "KERAS_BACKEND"}}
    env["MLFLOW_ENV_ROOT"] = str(tmp_path / "envs")
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{MODEL_NAME}@champion")
    listed = Path(requirements).read_text()
    assert "kedro" not in listed and "tensorflow" not in listed, listed
    serve_and_check(champion, tracking_store, tmp_path, "virtualenv", env)
