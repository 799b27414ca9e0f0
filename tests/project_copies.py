"""Throw-away copies of the project (its conf/base, tiny parameters, tiny decoded splits) to
run whole pipelines in through a KedroSession. Importable from any test folder (tests/ is on
sys.path through tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from image_classifiers.datasets import ImageSetDataset

PROJECT = Path(__file__).resolve().parents[1]


def copy_project(root: Path) -> Path:
    """Copy pyproject.toml and conf/ (all environments, an empty conf/local) into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself is installed; Kedro wants the folder
    return root


def make_project(root: Path, parameters: str, image_sets: dict[str, dict[str, Any]]) -> Path:
    """Copy the project into ``root`` (``copy_project``), add ``parameters`` in conf/local and
    save each ``image_sets[split]`` as ``data/05_model_input/<split>``."""
    copy_project(root)
    (root / "conf" / "local" / "parameters_tiny.yml").write_text(parameters)
    for split, image_set in image_sets.items():
        ImageSetDataset(str(root / "data" / "05_model_input" / split)).save(image_set)
    return root


def end_active_runs() -> None:
    """Close runs a failed or interrupted test may have left open in this process."""
    while mlflow.active_run():
        mlflow.end_run()


def run_pipeline(
    project: Path, pipeline: str, runtime_params: dict | None = None, env: str | None = None
) -> None:
    """``kedro run --pipelines=<pipeline> [--env=<env>]`` in ``project`` (the working
    directory)."""
    end_active_runs()
    # Re-registers the pipelines, so pipelines that read conf/ at registration see this copy's.
    bootstrap_project(project)
    try:
        with KedroSession.create(
            project_path=project, env=env, runtime_params=runtime_params
        ) as session:
            session.run(pipeline_names=[pipeline])
    finally:
        bootstrap_project(PROJECT)  # later tests see the real project's pipelines


def without_mlflow(pipeline: Any, catalog: Any) -> Any:
    """``pipeline``, after turning off its catalog's kedro-mlflow logging, for a run outside
    ``kedro run`` (no MLflow run to log to: the datasets would open a stray one)."""
    from kedro_mlflow.io.catalog.switch_catalog_logging import switch_catalog_logging

    for name in pipeline.datasets():  # dataset factories resolve lazily
        catalog.get(name, fallback_to_runtime_pattern=True)
    switch_catalog_logging(catalog, False)
    return pipeline
