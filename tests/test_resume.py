"""A `kedro run` killed with SIGKILL mid-training and started again with the same command
continues after its last finished epoch (issue #18's acceptance), in a copy of the project,
and marks the killed run's MLflow runs KILLED (issue #22)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from project_copies import make_project

pytestmark = pytest.mark.slow

COMMAND = [
    str(Path(sys.executable).with_name("kedro")),
    "run",
    "--env=smoke",
    "--pipelines=model_training",
    "--params=training.epochs=12",
]
EPOCH = re.compile(r"Epoch (\d+)/12 - ")


def _image_set(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    base = np.where(labels == 0, 60, 190)[:, None, None, None]
    images = np.clip(rng.normal(base, 30, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    files = [f"{seed}-{i}.jpg" for i in range(n)]
    return {"images": images, "labels": labels, "classes": ["cat", "dog"], "files": files}


def _start(project: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        COMMAND,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_killed_kedro_run_resumes_after_its_last_finished_epoch(tmp_path):
    splits = {"train": _image_set(16, 0), "validation": _image_set(8, 1), "test": _image_set(8, 2)}
    project = make_project(tmp_path / "project", "", splits)

    first = _start(project)
    seen: list[int] = []
    for line in first.stdout:
        if match := EPOCH.search(line):
            seen.append(int(match.group(1)))
            if seen[-1] >= 4:
                first.send_signal(signal.SIGKILL)
                break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, f"the run ended before epoch 4: {seen}"
    assert (project / "data/06_models/checkpoints").is_dir()

    second = _start(project)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-3000:]
    resumed = [int(match) for match in EPOCH.findall(output)]
    assert "Resuming" in output
    assert resumed[0] >= 5 and resumed[-1] == 12, resumed
    # It ends with a model and metrics, as a whole run does; the history covers all epochs.
    assert (project / "data/06_models/mini_xception.keras").stat().st_size > 0
    reports = project / "data/08_reporting/mini_xception"
    assert json.loads((reports / "metrics.json").read_text())["num_test_images"] == 8
    history = json.loads((reports / "training_history.json").read_text())
    assert len(history["loss"]) == 12
    assert not (project / "data/06_models/checkpoints").exists()
    # The killed run's pipeline and model runs are KILLED, not RUNNING for ever.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    statuses = sorted(run.info.status for run in client.search_runs(experiments))
    assert statuses == ["FINISHED", "FINISHED", "KILLED", "KILLED"], statuses
    assert output.count("was left running by a killed process; marked KILLED") == 2
