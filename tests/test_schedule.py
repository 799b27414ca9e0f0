"""The Dagster deployment of the Kedro project (image_classifiers.definitions): the retrain
job, its weekly schedule from conf/base/dagster.yml, one run of it in process, and one on
Dagster's multiprocess executor (each op in its own process) whose MLflow runs match
`kedro run`'s.

Needs the optional extra: pip install -e ".[dagster]" (skipped without it)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import mlflow
import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

pytest.importorskip("dagster", reason='the Dagster extra: pip install -e ".[dagster]"')

import dagster as dg

from image_classifiers.definitions import build_definitions, retrain_job
from image_classifiers.pipelines.retrain import nodes as retrain_nodes

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
    assert schedule.job_name == "retrain"

    # One op per Kedro node, in the pipeline's order of dependencies.
    job = definitions.get_job_def("retrain")
    assert {node.name for node in job.nodes} == {node.name for node in pipelines["retrain"].nodes}
    upstream = {
        op.name: {dependency.node for dependency in inputs.values()}
        for op, inputs in job.graph.dependencies.items()
    }
    assert upstream == {
        node.name: {parent.name for parent in parents}
        for node, parents in pipelines["retrain"].node_dependencies.items()
    }
    assert definitions.get_job_def("predict") is not None


@pytest.mark.slow
@pytest.mark.parametrize("job_name", ["retrain", "predict"])
def test_each_op_can_run_in_its_own_process(deployment, job_name):
    root, definitions = deployment
    assert definitions.get_job_def(job_name).executor_def.name == "multiprocess"
    # Every dataset one node hands another is a catalog file, which the next op's Kedro
    # session reads: none is left to a MemoryDataset, which would be empty in that process.
    pipeline = pipelines[job_name]
    edges = pipeline.all_outputs() & {name for node in pipeline.nodes for name in node.inputs}
    with KedroSession.create(root, env="local") as session:
        catalog = session.load_context().catalog
        in_memory = {name for name in edges if isinstance(catalog.get(name), MemoryDataset | None)}
    assert edges and not in_memory


@pytest.mark.slow
def test_retrain_then_predict_jobs_run_in_process(deployment):
    root, definitions = deployment
    helpers.add_incoming(root, 8, seed=1)

    result = definitions.get_job_def("retrain").execute_in_process()

    assert result.success
    report = json.loads((root / "data/08_reporting/retrain/report.json").read_text())
    (challenger,) = report["challengers"].values()
    assert challenger["action"] == "promote" and report["new_images"] == 8
    assert helpers.incoming_files(root) == []
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(helpers.MODEL_NAME).aliases
    assert str(aliases["champion"]) == challenger["version"]
    # kedro-mlflow's hooks ran inside the Dagster job: the run has the pipeline's parameters.
    run = client.get_run(challenger["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["retrain.model"] == "tiny"
    assert run.data.tags["dagster_run_id"] == result.run_id  # every op logged into it

    # predict, with a Kedro runtime parameter from the job's `params` in conf/local/dagster.yml
    # (predict reads the champion of `registered_model_name`, cats_vs_dogs by default).
    helpers.add_incoming(root, 4, seed=3, folder="predict")
    local = {"jobs": {"predict": {"params": {"registered_model_name": helpers.MODEL_NAME}}}}
    (root / "conf/local/dagster.yml").write_text(yaml.safe_dump(local))
    predict = build_definitions(env="local", project_path=root).get_job_def("predict")
    assert predict.executor_def.name == "multiprocess"  # the base config, kept

    result = predict.execute_in_process()

    assert result.success
    summary = json.loads((root / "data/08_reporting/predictions_summary.json").read_text())
    assert summary["images"] == summary["predicted"] == 4
    (run,) = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.dagster_run_id = '{result.run_id}'"
    )
    assert run.info.run_name == "predict" and run.info.status == "FINISHED"


@pytest.mark.slow
def test_a_failing_op_ends_the_mlflow_run_failed_and_moves_nothing(deployment, monkeypatch):
    root, definitions = deployment
    delivered = helpers.add_incoming(root, 4, seed=2)

    def crash(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(retrain_nodes, "log_classifier", crash)  # while registering
    result = definitions.get_job_def("retrain").execute_in_process(raise_on_error=False)

    assert not result.success
    assert all(path.is_file() for path in delivered)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("image_classifiers")
    (latest,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert latest.info.status == "FAILED" and mlflow.active_run() is None
    assert latest.data.tags["dagster_run_id"] == result.run_id


@pytest.mark.slow
def test_invalid_job_params_fail_the_first_op_and_its_mlflow_run(deployment):
    root, _ = deployment
    delivered = helpers.add_incoming(root, 2, seed=4)
    local = root / "conf/local/dagster.yml"
    local.write_text(
        yaml.safe_dump({"jobs": {"retrain": {"params": {"retrain": {"min_score": "high"}}}}})
    )
    try:
        job = build_definitions(env="local", project_path=root).get_job_def("retrain")
        result = job.execute_in_process(raise_on_error=False)
    finally:
        local.unlink()

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == pipelines["retrain"].nodes[0].name  # Kedro stopped it at once
    assert "min_score" in str(failure.event_specific_data.error)
    assert all(path.is_file() for path in delivered)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs(
        [client.get_experiment_by_name("image_classifiers").experiment_id],
        filter_string=f"tags.dagster_run_id = '{result.run_id}'",
    )
    assert run.info.status == "FAILED"


# ---- the multiprocess executor --------------------------------------------------------------
def one_epoch_parameters() -> str:
    params = yaml.safe_load(helpers.TINY_PARAMETERS)
    params["training"]["epochs"] = params["retrain"]["training"]["epochs"] = 1
    params["retrain"]["min_score"] = 0.0  # the first challenger, however weak, is champion
    return yaml.safe_dump(params)


def mlflow_summary(tracking_uri: str) -> dict:
    """What `kedro run` and a Dagster run must both leave in MLflow (not ids or times)."""
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    names = {run.info.run_id: run.info.run_name for run in runs}
    summary = []
    for run in runs:
        tags = run.data.tags
        own_tags = {k: v for k, v in tags.items() if k.startswith("retrain.") or k in PROJECT_TAGS}
        summary.append(
            {
                "name": run.info.run_name,
                "parent": names.get(tags.get("mlflow.parentRunId")),
                "status": run.info.status,
                "params": run.data.params,
                # Each metric logged as often as in `kedro run` (once per epoch, or once).
                "metrics": {
                    key: len(client.get_metric_history(run.info.run_id, key))
                    for key in run.data.metrics
                },
                # The reason and the delivery's run id (a timestamp) differ between two runs.
                "tags": {
                    k: v
                    for k, v in own_tags.items()
                    if k not in {"retrain.reason", "retrain.incoming_run"}
                },
                "artifacts": artifact_paths(client, run.info.run_id),
            }
        )
    model = client.get_registered_model(helpers.MODEL_NAME)
    versions = client.search_model_versions(f"name='{helpers.MODEL_NAME}'")
    return {
        "runs": sorted(summary, key=lambda run: (run["name"], run["parent"] or "")),
        "versions": sorted((v.version, names[v.run_id]) for v in versions),
        "aliases": dict(model.aliases),
    }


def artifact_paths(client: mlflow.MlflowClient, run_id: str, folder: str | None = None) -> list:
    paths = []
    for item in client.list_artifacts(run_id, folder):
        paths += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(paths)


# The project's own tags (hooks.ModelRunsHook); kedro-mlflow's differ by runner anyway.
PROJECT_TAGS = ("kedro_pipeline", "keras_backend", "keras_version", "device")


@pytest.mark.slow
def test_retrain_job_on_the_multiprocess_executor_logs_as_kedro_run(tmp_path, monkeypatch):
    parameters = one_epoch_parameters()
    by_kedro = helpers.make_project(tmp_path / "kedro" / "project", parameters)
    by_dagster = helpers.make_project(tmp_path / "dagster" / "project", parameters)
    uris = {root: f"sqlite:///{root.parent / 'mlflow.db'}" for root in (by_kedro, by_dagster)}
    for root in (by_kedro, by_dagster):
        helpers.add_incoming(root, 8, seed=1)

    monkeypatch.chdir(by_kedro)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uris[by_kedro])
    helpers.run_retrain(by_kedro)

    monkeypatch.chdir(by_dagster)  # the op processes find the project from here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uris[by_dagster])
    try:
        with dg.instance_for_test() as instance:
            result = dg.execute_job(dg.reconstructable(retrain_job), instance=instance)
            dagster_tags = instance.get_run_by_id(result.run_id).tags
        op_names = {node.name for node in retrain_job().nodes}
    finally:
        bootstrap_project(PROJECT)  # later tests see the real project

    assert result.success
    steps = {e.step_key: e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
    assert set(steps) == op_names
    assert len(set(steps.values())) == len(steps) and os.getpid() not in steps.values()
    report = json.loads((by_dagster / "data/08_reporting/retrain/report.json").read_text())
    (challenger,) = report["challengers"].values()
    assert challenger["action"] == "promote" and helpers.incoming_files(by_dagster) == []

    expected, found = mlflow_summary(uris[by_kedro]), mlflow_summary(uris[by_dagster])
    assert [run["name"] for run in found["runs"]] == [run["name"] for run in expected["runs"]]
    for ours, theirs in zip(found["runs"], expected["runs"], strict=True):
        for key, value in theirs.items():
            assert ours[key] == value, f"{theirs['name']}: {key}"
    assert (found["versions"], found["aliases"]) == (expected["versions"], expected["aliases"])
    (run,) = mlflow.MlflowClient(uris[by_dagster]).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uris[by_dagster]).search_experiments()]
    )
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert dagster_tags["mlflow_run_id"] == run.info.run_id == challenger["mlflow_run_id"]
