"""The Dagster deployment generated from the Kedro project by kedro-dagster: the retrain job,
its weekly schedule from conf/base/dagster.yml, and one run of it, in process.

Needs the optional extra: pip install -e ".[dagster]" (skipped without it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import pytest
import yaml

pytest.importorskip("kedro_dagster", reason='the Dagster extra: pip install -e ".[dagster]"')

from image_classifiers.definitions import build_definitions
from image_classifiers.pipelines.retrain import create_pipeline

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent


def _load_helpers():
    # The tiny project of the retraining tests (a folder of test modules, not a package).
    path = TESTS / "pipelines" / "retrain" / "retrain_project.py"
    spec = importlib.util.spec_from_file_location("retrain_project_for_schedule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load_helpers()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Dagster definitions of a tiny copy of the project (its real conf/base/dagster.yml)."""
    root = helpers.make_project(tmp_path_factory.mktemp("dagster") / "project")
    patch = pytest.MonkeyPatch()
    patch.chdir(root)
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root.parent / 'mlflow.db'}")
    previous = mlflow.get_tracking_uri()
    try:
        yield root, build_definitions(env="local", project_path=root)
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
        patch.undo()


@pytest.mark.slow
def test_retrain_job_is_scheduled_weekly_from_the_config(deployment):
    _, definitions = deployment
    config = yaml.safe_load((PROJECT / "conf/base/dagster.yml").read_text())
    schedule_name = config["jobs"]["retrain"]["schedule"]
    cron = config["schedules"][schedule_name]["cron_schedule"]
    *_time, day_of_month, month, day_of_week = cron.split()
    assert day_of_month == month == "*" and day_of_week.isdigit(), f"not weekly: {cron}"

    (schedule,) = definitions.schedules  # predict runs on demand only
    assert schedule.cron_schedule == cron and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "local__retrain"

    job = definitions.get_job_def("local__retrain")
    # One op per Kedro node, plus the ops that run Kedro's pipeline hooks (kedro-mlflow).
    ops = {node.name for node in job.nodes}
    assert ops - {n.name for n in create_pipeline().nodes} == {
        "before_pipeline_run_hook_retrain",
        "after_pipeline_run_hook_retrain",
    }
    assert definitions.get_job_def("local__predict") is not None


@pytest.mark.slow
def test_retrain_job_runs_in_process(deployment):
    root, definitions = deployment
    helpers.add_incoming(root, 8, seed=1)

    result = definitions.get_job_def("local__retrain").execute_in_process()

    assert result.success
    report = json.loads((root / "data/08_reporting/retrain/report.json").read_text())
    assert report["action"] == "promote" and report["new_images"] == 8
    assert helpers.incoming_files(root) == []
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(helpers.MODEL_NAME).aliases
    assert str(aliases["champion"]) == report["version"]
    # kedro-mlflow's hooks ran inside the Dagster job: the run has the pipeline's parameters.
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["retrain.model"] == "tiny"
