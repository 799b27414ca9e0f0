"""The team MLflow server (scripts/mlflow_server.sh): PostgreSQL backend store, artifacts
proxied by the server. Two tiny pipeline runs started at once and a retrain run against it
with ``MLFLOW_TRACKING_URI=http://...``; everything must be found on the server.

Needs PostgreSQL's server binaries (Debian: apt-get install postgresql; .ci/run installs
them) and the psycopg driver (a test dependency); skipped with the reason otherwise. One
cluster and one server serve the whole module (starting them takes seconds)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from postgres_cluster import PostgresUnavailable, mlflow_server, postgres_database

from image_classifiers.tracking import ensure_experiment

pytestmark = pytest.mark.slow
pytest.importorskip("psycopg", reason='the PostgreSQL driver: pip install "psycopg[binary]"')

TESTS = Path(__file__).resolve().parent
EXPERIMENT = "image_classifiers"  # conf/base/mlflow.yml
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
PLOTS = {"training_curves.png", "confusion_matrix.png", "misclassified.png"}


def _load(relative: str):
    # Helpers of other test folders (folders of test modules, not packages).
    path = TESTS / relative
    spec = importlib.util.spec_from_file_location(f"mlflow_server_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny = _load("pipelines/compare_architectures/tiny_project.py")
retrain = _load("pipelines/retrain/retrain_project.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(url, artifacts folder)`` of an MLflow server on a fresh PostgreSQL database."""
    root = tmp_path_factory.mktemp("team_server")
    with ExitStack() as stack:
        try:
            database = stack.enter_context(postgres_database())
        except PostgresUnavailable as exc:
            pytest.skip(f"PostgreSQL cannot be started here: {exc}")
        url = stack.enter_context(mlflow_server(database, root / "artifacts"))
        yield url, root / "artifacts"


@pytest.fixture
def client(server, monkeypatch) -> mlflow.MlflowClient:
    url, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


def _kedro_run(project: Path, url: str) -> subprocess.Popen:
    """``kedro run --pipelines=compare_architectures`` in its own process, against ``url``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines=compare_architectures",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_runs_started_at_once_both_land_whole_on_the_server(server, client, tmp_path):
    url, artifacts = server
    names = ("team_a", "team_b")
    projects = {name: tiny.make_project(tmp_path / name) for name in names}
    processes = {name: _kedro_run(projects[name], url) for name in names}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name} failed:\n{output[-4000:]}"

    experiment = client.get_experiment_by_name(EXPERIMENT)
    # One experiment for both, even though both runs tried to create it at the same time.
    assert len([e for e in client.search_experiments() if e.name == EXPERIMENT]) == 1
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [run for run in runs if run.info.run_name == "compare_architectures"]
    assert len(parents) == 2 and all(run.info.status == "FINISHED" for run in parents)
    for parent in parents:
        children = {
            run.data.tags["model"]: run
            for run in runs
            if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        }
        assert set(children) == set(tiny.TINY_MODELS)
        parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert "architecture_comparison.csv" in parent_artifacts
        for model, run in children.items():
            assert run.info.status == "FINISHED", model
            for key in HISTORY_KEYS:
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                assert steps == list(range(tiny.EPOCHS)), (model, key)
            assert {a.path for a in client.list_artifacts(run.info.run_id)} >= PLOTS
    for model in tiny.TINY_MODELS:
        # Each model registers under "<model>_keras": one version from each run.
        versions = client.search_model_versions(f"name='{model}_keras'")
        trained_by = {v.run_id for v in versions}
        model_runs = {run.info.run_id for run in runs if run.data.tags.get("model") == model}
        assert len(versions) == 2 and trained_by == model_runs, model
    for project in projects.values():
        # Nothing was written beside the project: artifacts went through the server.
        assert not (project / "mlruns").exists() and not (project / "mlartifacts").exists()
        assert not (project / "mlflow.db").exists()
    stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert stored >= PLOTS | {"architecture_comparison.csv", "MLmodel"}


def test_retrain_registers_a_champion_on_the_server(server, client, tmp_path, monkeypatch):
    url, _ = server
    project = retrain.make_project(tmp_path / "retrain")
    monkeypatch.chdir(project)
    retrain.add_incoming(project, 8, seed=1)
    retrain.run_retrain(project)

    report = json.loads((project / "data/08_reporting/retrain/report.json").read_text())
    (report,) = report["challengers"].values()  # the one challenger
    assert report["action"] == "promote"
    model = client.get_registered_model(retrain.MODEL_NAME)
    assert str(model.aliases["champion"]) == report["version"]
    version = client.get_model_version(retrain.MODEL_NAME, report["version"])
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["retrain.new_images"] == 8
    # The champion was logged by (a run nested in) the retrain run; its files come back
    # through the server.
    trained = client.get_run(version.run_id)
    assert trained.info.run_id == run.info.run_id or (
        trained.data.tags.get("mlflow.parentRunId") == run.info.run_id
    )
    loaded = mlflow.pyfunc.load_model(f"models:/{retrain.MODEL_NAME}@champion")
    assert loaded.metadata.signature is not None
    assert not (project / "mlruns").exists() and not (project / "mlflow.db").exists()
    assert mlflow.get_tracking_uri() == url


def test_an_experiment_created_meanwhile_by_another_run_is_taken_as_is(client, monkeypatch):
    url = client.tracking_uri
    experiment_id = client.create_experiment("created_meanwhile")
    # The other run creates it between this run's lookup and its create call.
    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "get_experiment_by_name", lambda self, name: None)
        ensure_experiment(url, "created_meanwhile")
    assert client.get_experiment_by_name("created_meanwhile").experiment_id == experiment_id
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        ensure_experiment(url, "")  # any other error is not swallowed


def test_the_database_uri_stays_out_of_the_process_list(tmp_path):
    # A stand-in `mlflow` records what the script hands it (any local user can read argv).
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "env: $MLFLOW_BACKEND_STORE_URI"\n')
    fake.chmod(0o755)
    uri = "postgresql+psycopg://mlflow:s3cret@db.example.org:5432/mlflow"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(TESTS.parent / "scripts" / "mlflow_server.sh"), "--port", "5001"],
        env={**env, "MLFLOW_BACKEND_STORE_URI": uri},
        capture_output=True,
        text=True,
        check=True,
    )
    argv, passed = result.stdout.splitlines()
    assert "s3cret" not in argv and "--port 5001" in argv
    assert passed == f"env: {uri}"
