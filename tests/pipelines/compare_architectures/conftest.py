"""Fixtures: a tiny copy of the project with MLflow pointed at a SQLite file inside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project
from tiny_project import PROJECT, end_active_runs, make_project


@pytest.fixture(scope="module")
def tracked_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny project whose MLflow store is ``sqlite:///<project>/tracking.db``."""
    project = make_project(tmp_path_factory.mktemp("tracked") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'tracking.db'}")
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
        yield project
        end_active_runs()
    bootstrap_project(PROJECT)  # back to the real project's pipelines for later tests
