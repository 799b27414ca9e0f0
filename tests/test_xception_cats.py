"""End to end: `kedro run --env=smoke --pipeline=xception_cats` on a generated archive.

The project's own conf/ is copied into a temp project so that the run writes its data,
models, reports and MLflow store there and never into the working copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixture_archives import write_archive
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_xception_cats_runs_end_to_end_in_the_smoke_env(tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copy(PROJECT / "pyproject.toml", project)
    # Kedro wants the source folder to exist; the package itself is installed.
    (project / "src").mkdir()
    archive = write_archive(tmp_path / "dogs-vs-cats.zip", indices=range(16))
    monkeypatch.chdir(project)  # parameters such as download.archive_path are relative
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    bootstrap_project(project)
    with KedroSession.create(
        project_path=project,
        env="smoke",
        runtime_params={"download": {"local_path": str(archive)}},
    ) as session:
        session.run(pipeline_names=["xception_cats"])

    assert (project / "data/06_models/mini_xception.keras").stat().st_size > 0
    reports = project / "data/08_reporting/mini_xception"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["num_test_images"] == 8  # 4 per class in the smoke split
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0
    for png in ("training_curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (reports / png).read_bytes()[:4] == b"\x89PNG"
    # The transfer-learning stage (random weights in the smoke env) ran on the same splits.
    assert list((project / "data/06_models").glob("transfer_*.keras"))
