"""Tracking helpers: where runs are stored, what the MLflow datasets log, run tags.

Whole tracked pipeline runs (nested run per model, registry, FAILED runs) are tested in
tests/pipelines/compare_architectures/test_compare_architectures_run.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook
from kedro_mlflow.io.artifacts import MlflowArtifactDataset
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from kedro_mlflow.io.models import MlflowModelTrackingDataset
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from project_copies import copy_project

from image_classifiers import settings
from image_classifiers.core.data.extract import HOST
from image_classifiers.core.models import build_classifier
from image_classifiers.hooks import ModelRunsHook
from image_classifiers.model_logging import (
    keras_signature,
    mlflow_records,
)
from image_classifiers.tracking import (
    MlflowEpochMetrics,
    TrackingStoreLost,
    close_killed_runs,
    flatten_params,
    git_commit,
    log_image_set,
    metric_history,
    process_tags,
)

PROJECT = Path(__file__).resolve().parents[1]


# ---- where runs are stored ---------------------------------------------------------------
def _mlflow_conf(project: Path) -> dict:
    """``mlflow.yml`` as kedro-mlflow reads it: the project's settings' loader on its conf/."""
    loader = OmegaConfigLoader(str(project / "conf"), **settings.CONFIG_LOADER_ARGS)
    conf = loader["mlflow"]
    KedroMlflowConfig.model_validate(conf)  # kedro-mlflow accepts it
    return conf


def test_default_store_is_the_sqlite_file_at_the_project_root(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(project / "src")  # e.g. a notebook's folder: still the project root
    conf = _mlflow_conf(project)
    assert conf["server"]["mlflow_tracking_uri"] == f"sqlite:///{project.resolve()}/mlflow.db"
    experiment = conf["tracking"]["experiment"]
    assert experiment["name"] == "image_classifiers"
    kwargs = experiment["create_experiment_kwargs"]
    assert kwargs["artifact_location"] == f"{project.resolve()}/mlartifacts"
    # The MLflow UI then opens the experiment on its runs table.
    assert kwargs["tags"] == {"mlflow.experimentKind": "custom_model_development"}
    assert conf["tracking"]["run"]["nested"] is False
    assert conf["tracking"]["params"]["dict_params"]["flatten"] is True


def test_the_environment_variable_picks_the_store_and_its_artifacts(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/stores/runs.db")
    conf = _mlflow_conf(project)
    assert conf["server"]["mlflow_tracking_uri"] == f"sqlite:///{tmp_path}/stores/runs.db"
    kwargs = conf["tracking"]["experiment"]["create_experiment_kwargs"]
    assert kwargs["artifact_location"] == f"{tmp_path}/stores/mlartifacts"
    # A server keeps its own artifact store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    conf = _mlflow_conf(project)
    assert conf["server"]["mlflow_tracking_uri"] == "http://mlflow:5000"
    assert conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] is None


def test_conf_local_mlflow_yml_wins_and_changes_only_its_keys(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ignored:5000")
    (project / "conf" / "local" / "mlflow.yml").write_text(
        "server: {mlflow_tracking_uri: 'http://mlflow.example.org'}\n"
    )
    conf = _mlflow_conf(project)
    assert conf["server"]["mlflow_tracking_uri"] == "http://mlflow.example.org"
    assert conf["server"]["credentials"] is None  # kept from conf/base
    assert conf["tracking"]["experiment"]["name"] == "image_classifiers"


_START_TOGETHER = """
import sys, time
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project(sys.argv[1])
while time.time() < float(sys.argv[2]):  # both processes connect at the same moment
    time.sleep(0.01)
with KedroSession.create(project_path=sys.argv[1]) as session:
    session.load_context()  # kedro-mlflow connects to the store and sets the experiment
"""


@pytest.mark.slow
def test_two_runs_starting_at_once_on_a_fresh_store_both_start(tmp_path):
    # Without the lock, one of them failed on MLflow's schema migrations or on creating the
    # experiment about every second time here.
    project = copy_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = str(time.time() + 20)  # after both have imported Kedro and the project
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _START_TOGETHER, str(project), start],
            cwd=project,  # where `kedro run` runs: the default store is the project's
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        output, _ = child.communicate(timeout=180)
        assert child.returncode == 0, output[-3000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()] == ["image_classifiers", "Default"]


# ---- the kedro-mlflow behaviour ModelRunsHook builds on --------------------------------------
def _kedro_mlflow_hook(project: Path) -> Any:
    """kedro-mlflow's hook instance, configured for ``project`` by a session's context."""
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project) as session:
            session.load_context()
    finally:
        bootstrap_project(PROJECT)
    return mlflow_hook


_RUN_PARAMS = dict.fromkeys(
    ("tags", "node_names", "from_nodes", "to_nodes", "from_inputs", "load_versions")
)


def _pipeline_run_started(tmp_path, monkeypatch):
    """kedro-mlflow's hook, its pipeline run of an empty pipeline "demo" started."""
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    hook = _kedro_mlflow_hook(project)
    run_params = {**_RUN_PARAMS, "pipeline_names": ["demo"]}
    catalog, pipeline = DataCatalog(), Pipeline([])
    hook.before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
    return hook, run_params, catalog, pipeline


def test_kedro_mlflow_keeps_its_pipeline_run_active_before_each_node(tmp_path, monkeypatch):
    """ModelRunsHook leaves a model's run before kedro-mlflow's before_node_run and enters
    it after: that hook must find its pipeline run still the only active one and log the
    node's parameters there (so the model hook logs them to the model's run itself)."""
    hook, run_params, catalog, pipeline = _pipeline_run_started(tmp_path, monkeypatch)
    run = mlflow.active_run()
    assert run is not None and run.info.run_name == "demo"
    for epochs in (3, 3):  # two nodes reading the same parameter
        step = node(lambda x: x, "params:training", "out", name=f"n{epochs}")
        hook.before_node_run(
            node=step,
            catalog=catalog,
            inputs={"params:training": {"epochs": epochs}},
            is_async=False,
        )
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert mlflow.get_run(run.info.run_id).data.params == {"training.epochs": "3"}
    hook.after_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
    assert mlflow.active_run() is None, "kedro-mlflow stacked its run more than once"
    assert mlflow.get_run(run.info.run_id).info.status == "FINISHED"


def test_kedro_mlflow_opens_no_run_for_a_pipeline_with_tracking_disabled(tmp_path, monkeypatch):
    """The Mlflow* datasets log only to an active run: none here, so they log nothing."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "mlflow.yml").write_text(
        "tracking: {disable_tracking: {pipelines: [demo]}}\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    hook = _kedro_mlflow_hook(project)
    run_params = {**_RUN_PARAMS, "pipeline_names": ["demo"]}
    hook.before_pipeline_run(run_params=run_params, pipeline=Pipeline([]), catalog=DataCatalog())
    assert mlflow.active_run() is None


# ---- metrics -------------------------------------------------------------------------------
def test_numbers_become_metrics_and_lists_of_numbers_histories():
    history = metric_history(
        {
            "loss": [0.7, 0.5, np.float32(0.4)],
            "test_accuracy": 0.75,
            "num_test_images": np.int64(8),
            "classes": ["cat", "dog"],  # not numbers: the file keeps them
            "confusion_matrix": [[3, 1], [1, 3]],
            "test_roc_auc": None,
            "mixed_precision": True,
        }
    )
    assert history == {
        "loss": [
            {"value": 0.7, "step": 0},
            {"value": 0.5, "step": 1},
            {"value": pytest.approx(0.4), "step": 2},
        ],
        "test_accuracy": [{"value": 0.75, "step": 0}],
        "num_test_images": [{"value": 8.0, "step": 0}],
    }


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite tracking store for the module (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri: str, request: pytest.FixtureRequest) -> Iterator[mlflow.MlflowClient]:
    """The module's store with an experiment of this test's own; no run is left open and
    the global tracking URI is restored."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store_uri)
    mlflow.set_experiment(request.node.name)
    try:
        yield mlflow.MlflowClient()
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def test_kedro_mlflow_datasets_log_into_the_active_run(tmp_path, store):
    """What ModelRunsHook relies on: the catalog's kedro-mlflow datasets (no run_id given)
    log into whatever run is active when they save, here a nested model run."""
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    plot = MlflowArtifactDataset(
        dataset={
            "type": "image_classifiers.datasets.atomic.AtomicMatplotlibDataset",
            "filepath": str(tmp_path / "curve.png"),
        }
    )
    metrics = MlflowMetricsHistoryDataset(prefix="feature_extraction")
    with mlflow.start_run() as parent, mlflow.start_run(nested=True) as model_run:
        plot.save(figure)
        metrics.save(metric_history({"test_accuracy": 0.5, "loss": [0.9, 0.7], "note": "x"}))
    assert [a.path for a in store.list_artifacts(model_run.info.run_id)] == ["curve.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # atomic: no temp left
    logged = store.get_metric_history(model_run.info.run_id, "feature_extraction.loss")
    assert [(m.step, m.value) for m in logged] == [(0, 0.9), (1, 0.7)]
    assert set(store.get_run(model_run.info.run_id).data.metrics) == {
        "feature_extraction.loss",
        "feature_extraction.test_accuracy",
    }
    assert store.get_run(parent.info.run_id).data.metrics == {}
    assert store.list_artifacts(parent.info.run_id) == []


def test_kedro_mlflow_logs_a_nodes_parameters_to_whichever_run_is_active(tmp_path, monkeypatch):
    """Why ModelRunsHook leaves a model's run before kedro-mlflow's before_node_run: that
    hook's start_run of its pipeline run quietly fails while a model run is active, and the
    node's parameters would then land in the model's run only, not in the pipeline's."""
    hook, run_params, catalog, pipeline = _pipeline_run_started(tmp_path, monkeypatch)
    parent = mlflow.active_run()
    model_run = mlflow.start_run(nested=True)
    step = node(lambda x: x, "params:training", "out", name="n")
    inputs = {"params:training": {"epochs": 3}}
    hook.before_node_run(node=step, catalog=catalog, inputs=inputs, is_async=False)
    assert mlflow.active_run().info.run_id == model_run.info.run_id
    mlflow.end_run()
    hook.after_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
    assert mlflow.active_run() is None
    assert mlflow.get_run(model_run.info.run_id).data.params == {"training.epochs": "3"}
    assert mlflow.get_run(parent.info.run_id).data.params == {}


# ---- models -----------------------------------------------------------------------------
def _tiny_model() -> keras.Model:
    inputs = keras.Input((8, 8, 3), name="image")
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_signature_takes_the_model_shapes_with_a_free_batch_dimension():
    signature = keras_signature(_tiny_model())
    (inputs,), (outputs,) = signature.inputs.inputs, signature.outputs.inputs
    assert (inputs.name, inputs.shape, inputs.type) == ("image", (-1, 8, 8, 3), np.float32)
    assert outputs.shape == (-1, 1)


def test_signature_refuses_a_model_with_two_inputs():
    a, b = keras.Input((2,)), keras.Input((2,))
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="one input and one output"):
        keras_signature(model)


def _keras_flavor(**save_args: Any) -> MlflowModelTrackingDataset:
    """The catalog's "{name}.mlflow_model" entry."""
    requirements = ["keras>=3.15,<4", "tensorflow>=2.21,<2.22"]
    args = {"name": "model", "pip_requirements": requirements, **save_args}
    return MlflowModelTrackingDataset(flavor="mlflow.keras", save_args=args)


def test_the_mlflow_records_of_a_model_log_it_unregistered_with_its_metrics(store):
    model = _tiny_model()
    logged_model, history, summary = mlflow_records(model, {"test_accuracy": 0.5})
    assert "Total params: 193" in summary
    with mlflow.start_run() as run:
        _keras_flavor().save(logged_model)
        ModelRunsHook().after_dataset_saved("tiny.mlflow_model", logged_model)
        MlflowMetricsHistoryDataset().save(history)
    data = store.get_run(run.info.run_id).data
    assert data.metrics == {"param_count": 193, "test_accuracy": 0.5}
    assert store.search_registered_models() == []
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    # The generic pyfunc interface checks inputs against the signature the hook set.
    signature = mlflow.models.get_model_info(logged.model_uri).signature
    assert signature.inputs.inputs[0].shape == (-1, 8, 8, 3)
    requirements = Path(mlflow.pyfunc.get_model_dependencies(logged.model_uri)).read_text()
    assert "keras<4,>=3.15" in requirements.splitlines()
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        mlflow.keras.load_model(logged.model_uri).predict(images, verbose=0),
        model.predict(images, verbose=0),
        rtol=1e-6,
    )


# ---- live epoch metrics ------------------------------------------------------------------
class _HistoryProbe(keras.callbacks.Callback):
    """Placed after MlflowEpochMetrics: the run's ``loss`` steps as each epoch ends."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id, self.seen = run_id, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        history = mlflow.MlflowClient().get_metric_history(self.run_id, "loss")
        self.seen.append([m.step for m in history])


def _fit(callbacks: list, epochs: int) -> None:
    model = _tiny_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    images, labels = np.zeros((8, 8, 8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(images, labels, epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks)


def test_each_epoch_is_in_mlflow_as_soon_as_it_ends(store):
    with mlflow.start_run() as run:
        probe = _HistoryProbe(run.info.run_id)
        _fit([MlflowEpochMetrics(), probe], epochs=3)
    assert probe.seen == [[0], [0, 1], [0, 1, 2]]


def test_epoch_metrics_never_open_a_run_nor_stop_training(store, caplog, monkeypatch):
    _fit([MlflowEpochMetrics()], epochs=1)  # no active run: nothing to log to
    assert mlflow.active_run() is None
    assert mlflow.search_runs(output_format="list") == []

    def store_down(*args, **kwargs):
        raise MlflowException("the tracking server is down")

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", store_down)
    with mlflow.start_run():
        _fit([MlflowEpochMetrics()], epochs=2)
    assert caplog.text.count("training goes on without live metrics") == 1


def test_runs_left_running_by_a_killed_process_of_this_host_are_marked_killed(
    store, request, caplog
):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    experiment = store.get_experiment_by_name(request.node.name).experiment_id
    runs = {
        name: store.create_run(experiment, tags=tags, run_name=name).info.run_id
        for name, tags in {
            "killed": {"host": HOST, "pid": str(gone.pid)},
            "this process": process_tags(),
            "other host": {"host": "elsewhere", "pid": str(gone.pid)},
        }.items()
    }
    close_killed_runs(experiment)
    status = {name: store.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"killed": "KILLED", "this process": "RUNNING", "other host": "RUNNING"}
    assert "MLflow run 'killed'" in caplog.text


def test_training_stops_with_one_message_when_the_sqlite_store_is_deleted(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    callback = MlflowEpochMetrics()

    class DeleteStore(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            (tmp_path / "mlflow.db").unlink(missing_ok=True)  # mid-run, before the metrics

    mlflow.start_run()
    try:
        with pytest.raises(TrackingStoreLost, match="was deleted during"):
            _fit([DeleteStore(), callback], epochs=3)
    finally:
        with contextlib.suppress(MlflowException):  # the run cannot be ended: no store
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


# ---- run tags and parameters -----------------------------------------------------------------
def test_git_commit_of_the_checkout_and_of_a_folder_that_is_not_one(tmp_path):
    tags = git_commit(PROJECT)
    if not (PROJECT / ".git").exists():
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
    assert tags["git_dirty"] in {"true", "false"}
    assert git_commit(tmp_path) == {}


def test_flatten_params_as_kedro_mlflow_does():
    assert flatten_params({"filters": [4, 8], "head": {"dropout": 0.5}}, prefix="model") == {
        "model.filters": [4, 8],
        "model.head.dropout": 0.5,
    }


def test_model_runs_are_per_top_level_namespace_unless_excluded():
    hook = ModelRunsHook(excluded_namespaces=["reports"])

    def identity(x):
        return x

    assert hook.model_namespace(node(identity, "a", "b", namespace="mini_xception")) == (
        "mini_xception"
    )
    assert hook.model_namespace(node(identity, "a", "b", namespace="vgg16.fine_tune")) == "vgg16"
    assert hook.model_namespace(node(identity, "a", "b", namespace="reports")) is None
    assert hook.model_namespace(node(identity, "a", "b")) is None


def test_the_transfer_model_is_named_alike_wherever_its_base_is_set(tmp_path, store):
    """A base set in conf/local changes no file or registered name (it used to leave an
    Xception in transfer_vgg16.keras); the model's run records it instead."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "parameters.yml").write_text("transfer: {base: xception}\n")
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project) as session:
            context = session.load_context()
            catalog, params = context.catalog, context.params
    finally:
        bootstrap_project(PROJECT)
    assert params["transfer"].base == "xception"
    assert catalog.get("transfer.model")._path == project / "data/06_models/transfer.keras"
    save_args = catalog.get("transfer.mlflow_model")._describe()["save_args"]
    assert save_args["registered_model_name"] == "transfer_keras"
    hook = ModelRunsHook()
    with mlflow.start_run() as run:
        hook._log_input("transfer", "params:transfer", params["transfer"])
    logged = store.get_run(run.info.run_id).data
    assert logged.tags["architecture"] == "xception"
    assert logged.params["model.base"] == logged.params["transfer.base"] == "xception"


def test_the_comparison_notebook_is_valid_nbformat_without_outputs():
    notebook = json.loads((PROJECT / "notebooks" / "compare_architectures.ipynb").read_text())
    assert (notebook["nbformat"], notebook["nbformat_minor"]) == (4, 5)
    sources = []
    for cell in notebook["cells"]:
        assert cell["cell_type"] in {"markdown", "code"} and cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            sources.append("".join(cell["source"]))
            compile(sources[-1], cell["id"], "exec")
    assert any("mlflow.search_runs" in source for source in sources)


def test_a_logged_from_scratch_model_loads_without_the_projects_layers(
    tmp_path, store, monkeypatch
):
    model = build_classifier(
        "simple_convnet", (16, 16, 3), 2, filters=(4,), augmentation={"zoom": 0.2}
    )
    with mlflow.start_run() as run:
        _keras_flavor().save(mlflow_records(model, {})[0])
    # As in a process that never imported image_classifiers.core.layers: Keras knows no
    # custom class (before, this load failed with "Could not locate class 'RandomAugment'").
    for name in [k for k in keras.saving.get_custom_objects() if k.startswith("image_classifiers")]:
        monkeypatch.delitem(keras.saving.get_custom_objects(), name)
    loaded = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    assert not any(
        "augment" in layer.name and type(layer).__name__ != "Identity" for layer in loaded.layers
    )
    images = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6
    )


# ---- datasets logged by two runs at once -------------------------------------------------
class _Dataset:
    name = "train_set"


def _failing_log_input(monkeypatch, messages: list[str]) -> list[str]:
    """Make ``mlflow.log_input`` raise ``messages`` one by one, then succeed; return calls."""
    calls: list[str] = []

    def log_input(dataset, context):
        calls.append(context)
        if len(calls) <= len(messages):
            raise MlflowException(messages[len(calls) - 1])

    monkeypatch.setattr(mlflow, "log_input", log_input)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return calls


@pytest.mark.parametrize(
    "clash",
    [
        "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint",
        "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id",
    ],
)
def test_a_dataset_another_run_inserted_meanwhile_is_linked_on_retry(monkeypatch, clash):
    calls = _failing_log_input(monkeypatch, [f"BAD_REQUEST: {clash}"])
    log_image_set(_Dataset(), "training")
    assert calls == ["training", "training"]


def test_other_log_input_errors_are_raised_at_once(monkeypatch):
    calls = _failing_log_input(monkeypatch, ["RESOURCE_DOES_NOT_EXIST: no run"])
    with pytest.raises(MlflowException, match="no run"):
        log_image_set(_Dataset(), "training")
    assert len(calls) == 1


def test_a_clash_that_lasts_is_raised_after_the_last_attempt(monkeypatch):
    calls = _failing_log_input(monkeypatch, ["Duplicate entry 'x' for key 'PRIMARY'"] * 3)
    with pytest.raises(MlflowException, match="Duplicate entry"):
        log_image_set(_Dataset(), "training", attempts=3)
    assert len(calls) == 3
