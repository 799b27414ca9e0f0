"""kedro-viz and the MLflow UI, served on 127.0.0.1 and looked at in headless Chromium.

Needs Debian's ``chromium`` (CI: ``apt-get install -y chromium``); skipped without it.
``kedro viz build`` writes the static site, which Python's http.server serves as any static
host would; ``mlflow ui`` serves a SQLite store holding runs shaped like the project's (a
pipeline run with a nested run per model).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from project_copies import copy_project

pytestmark = pytest.mark.slow

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
# What a browser needs to render a local page, and nothing that reaches the network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
)
EXPERIMENT = "image_classifiers"
RUNS = ("xception_cats", "xception_cats.mini_xception", "xception_cats.transfer")

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{url} server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """End a server and the workers it started (it leads its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def browse(url: str, profile: Path, *, wait_ms: int) -> str:
    """The page's DOM after its scripts ran for ``wait_ms`` of virtual time."""
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def start(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def make_store(uri: str) -> str:
    """A store with one pipeline run and a nested run per model; returns the experiment id."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, tags={"mlflow.experimentKind": "custom_model_development"}
    )
    parent = client.create_run(experiment_id, run_name=RUNS[0])
    for name in RUNS[1:]:
        child = client.create_run(
            experiment_id, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id}
        )
        for epoch, loss in enumerate((0.69, 0.55, 0.41)):
            client.log_metric(child.info.run_id, "val_loss", loss, step=epoch)
        client.log_metric(child.info.run_id, "test_accuracy", 0.9)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return experiment_id


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """kedro-viz's static build and the MLflow UI, each on a free port of 127.0.0.1."""
    root = tmp_path_factory.mktemp("ui")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    store = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = make_store(store)
    mlflow_port, viz_port = free_port(), free_port()
    mlflow_log = root / "mlflow.log"
    # One worker: the default four take a minute to start on a small machine.
    command = [mlflow_bin, "ui", "--backend-store-uri", store, "--host", "127.0.0.1"]
    mlflow_ui = start(
        [*command, "--port", str(mlflow_port), "--uvicorn-opts", "--workers 1"],
        mlflow_log,
        root,
        env,
    )
    servers = [mlflow_ui]
    try:
        # kedro viz build writes build/ into the project it runs in: use a copy.
        project = copy_project(root / "project")
        kedro = str(Path(sys.executable).with_name("kedro"))
        built = subprocess.run(
            [kedro, "viz", "build"],
            cwd=project,
            env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'viz.db'}"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        assert (project / "build" / "index.html").is_file()
        viz_log = root / "viz.log"
        viz = start(
            [sys.executable, "-m", "http.server", str(viz_port), "--bind", "127.0.0.1"],
            viz_log,
            project / "build",
            env,
        )
        servers.append(viz)
        viz_url, mlflow_url = f"http://127.0.0.1:{viz_port}", f"http://127.0.0.1:{mlflow_port}"
        wait_until_served(f"{viz_url}/api/main", viz, viz_log, timeout=60)
        wait_until_served(f"{mlflow_url}/health", mlflow_ui, mlflow_log, timeout=300)
        yield {"viz": viz_url, "mlflow": mlflow_url, "experiment_id": experiment_id}
    finally:
        for server in servers:
            stop(server)


def visible_text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_kedro_viz_shows_the_xception_cats_pipeline(servers, tmp_path):
    url = f"{servers['viz']}/?pid=xception_cats"
    dom = browse(url, tmp_path / "profile", wait_ms=15_000)
    labels = set(re.findall(r'class="pipeline-node__text[^"]*"[^>]*>([^<]+)<', dom))
    # Data nodes and datasets, and the two model namespaces as collapsed modular pipelines.
    assert {"download_archive", "decode_train_images", "train_set", "data_quality_report"} <= labels
    assert {"mini_xception", "transfer"} <= labels
    # Datasets are drawn in their layers.
    text = visible_text(dom)
    for layer in ("raw", "model_input", "reporting"):
        assert re.search(rf"\b{layer}\b", text), layer


def test_mlflow_ui_lists_the_experiments_runs(servers, tmp_path):
    url = f"{servers['mlflow']}/#/experiments/{servers['experiment_id']}/runs"
    text = visible_text(browse(url, tmp_path / "profile", wait_ms=30_000))
    assert EXPERIMENT in text
    assert RUNS[0] in text  # the pipeline's run; the model runs are nested under it
    assert f"{len(RUNS)} matching runs" in text
