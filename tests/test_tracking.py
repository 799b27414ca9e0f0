"""Tracking helpers: where runs are stored, what the MLflow datasets log, run tags.

Whole tracked pipeline runs (nested run per model, registry, FAILED runs) are tested in
tests/pipelines/compare_architectures/test_compare_architectures_run.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DatasetError
from kedro.pipeline import node
from matplotlib.figure import Figure

from image_classifiers.hooks import MlflowDefaultsHook, ModelRunsHook
from image_classifiers.model_logging import MlflowKerasModelDataset, keras_signature
from image_classifiers.tracking import (
    MlflowCSVDataset,
    MlflowFigureDataset,
    MlflowJSONMetricsDataset,
    default_tracking_uri,
    flatten_params,
    git_commit,
    metrics_from,
    resolve_tracking_uri,
)

PROJECT = Path(__file__).resolve().parents[1]


# ---- where runs are stored ---------------------------------------------------------------
def test_default_store_is_the_sqlite_file_at_the_project_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, source = resolve_tracking_uri(None, tmp_path)
    assert (uri, source) == (f"sqlite:///{tmp_path.resolve()}/mlflow.db", "default")
    assert uri == default_tracking_uri(tmp_path)


def test_mlflow_yml_overrides_the_default_and_relative_sqlite_is_project_relative(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("http://mlflow:5000", tmp_path) == (
        "http://mlflow:5000",
        "mlflow.yml",
    )
    uri, _ = resolve_tracking_uri("sqlite:///stores/runs.db", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/stores/runs.db"
    assert resolve_tracking_uri("sqlite:////abs/runs.db", tmp_path)[0] == "sqlite:////abs/runs.db"


def test_the_environment_variable_wins_over_mlflow_yml(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://tracking.example.org")
    assert resolve_tracking_uri("http://mlflow:5000", tmp_path) == (
        "https://tracking.example.org",
        "environment",
    )


def _context(tmp_path: Path, mlflow_yml: str | None) -> SimpleNamespace:
    for env in ("base", "local"):
        (tmp_path / "conf" / env).mkdir(parents=True, exist_ok=True)
    if mlflow_yml is not None:
        (tmp_path / "conf" / "base" / "mlflow.yml").write_text(mlflow_yml)
    loader = OmegaConfigLoader(str(tmp_path / "conf"), base_env="base", default_run_env="local")
    return SimpleNamespace(config_loader=loader, project_path=tmp_path)


def test_defaults_hook_hands_kedro_mlflow_the_project_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    context = _context(tmp_path, (PROJECT / "conf/base/mlflow.yml").read_text())
    MlflowDefaultsHook().after_context_created(context)
    conf = context.config_loader["mlflow"]  # what kedro-mlflow reads next
    assert conf["server"]["mlflow_tracking_uri"] == default_tracking_uri(tmp_path)
    experiment = conf["tracking"]["experiment"]
    assert experiment["name"] == "image_classifiers"
    assert experiment["create_experiment_kwargs"]["artifact_location"] == (
        f"{tmp_path.resolve()}/mlartifacts"
    )
    # The MLflow UI then opens the experiment on its runs table.
    assert experiment["create_experiment_kwargs"]["tags"] == {
        "mlflow.experimentKind": "custom_model_development"
    }
    assert conf["tracking"]["run"]["nested"] is False
    assert conf["tracking"]["params"]["dict_params"]["flatten"] is True


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/stores/runs.db")
    context = _context(tmp_path / "project", None)
    MlflowDefaultsHook().after_context_created(context)
    kwargs = context.config_loader["mlflow"]["tracking"]["experiment"]["create_experiment_kwargs"]
    assert kwargs["artifact_location"] == f"{tmp_path}/stores/mlartifacts"


def test_defaults_hook_leaves_a_remote_server_its_artifact_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    # No mlflow.yml at all: kedro-mlflow's defaults, nested=True among them.
    context = _context(tmp_path, None)
    MlflowDefaultsHook().after_context_created(context)
    conf = context.config_loader["mlflow"]
    assert conf["server"]["mlflow_tracking_uri"] == "http://mlflow:5000"
    assert "experiment" not in conf["tracking"]
    assert conf["tracking"]["run"]["nested"] is False


# ---- metrics -------------------------------------------------------------------------------
def test_numbers_become_metrics_and_lists_of_numbers_histories():
    metrics = metrics_from(
        {
            "loss": [0.7, 0.5, np.float32(0.4)],
            "test_accuracy": 0.75,
            "num_test_images": np.int64(8),
            "classes": ["cat", "dog"],  # not numbers: the file keeps them
            "confusion_matrix": [[3, 1], [1, 3]],
            "test_roc_auc": None,
            "mixed_precision": True,
        },
        prefix="p_",
    )
    assert [(m.key, m.value, m.step) for m in metrics] == [
        ("p_loss", 0.7, 0),
        ("p_loss", 0.5, 1),
        ("p_loss", pytest.approx(0.4), 2),
        ("p_test_accuracy", 0.75, 0),
        ("p_num_test_images", 8.0, 0),
    ]
    assert [m.key for m in metrics_from({"a": 1, "b": 2}, keys=["b"])] == ["b"]


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


def test_json_metrics_dataset_writes_the_file_and_logs_history(tmp_path, store):
    dataset = MlflowJSONMetricsDataset(filepath=str(tmp_path / "history.json"))
    history = {"loss": [0.9, 0.6, 0.5], "val_loss": [1.0, 0.8, 0.7], "note": "kept"}
    with mlflow.start_run() as run:
        dataset.save(history)
    assert dataset.load() == history
    logged = store.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in logged] == [(0, 1.0), (1, 0.8), (2, 0.7)]
    assert set(store.get_run(run.info.run_id).data.metrics) == {"loss", "val_loss"}


def test_json_metrics_dataset_without_a_run_saves_but_opens_no_run(tmp_path, store):
    dataset = MlflowJSONMetricsDataset(filepath=str(tmp_path / "metrics.json"))
    dataset.save({"test_accuracy": 0.5})
    assert dataset.load() == {"test_accuracy": 0.5}
    assert mlflow.active_run() is None
    assert mlflow.search_runs(output_format="list") == []  # in this test's experiment


def test_json_metrics_dataset_rejects_what_is_not_a_dict(tmp_path):
    with pytest.raises(DatasetError, match="dict of metric names"):
        MlflowJSONMetricsDataset(filepath=str(tmp_path / "m.json")).save([0.1, 0.2])


def test_figure_and_csv_datasets_log_their_files_as_artifacts(tmp_path, store):
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    plot = MlflowFigureDataset(filepath=str(tmp_path / "reports" / "curve.png"))
    table = MlflowCSVDataset(filepath=str(tmp_path / "table.csv"), save_args={"index": False})
    with mlflow.start_run() as run:
        plot.save(figure)
        table.save(pd.DataFrame({"model": ["a"], "params": [3]}))
    assert {a.path for a in store.list_artifacts(run.info.run_id)} == {"curve.png", "table.csv"}
    assert table.load().to_dict("records") == [{"model": "a", "params": 3}]
    # Without a run: the files are written and no stray run is opened.
    plot.save(figure)
    assert mlflow.active_run() is None


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


def test_keras_model_dataset_logs_an_unregistered_model_with_its_summary(tmp_path, store):
    dataset = MlflowKerasModelDataset(filepath=str(tmp_path / "tiny.keras"))
    model = _tiny_model()
    with mlflow.start_run() as run:
        dataset.save(model)
    assert dataset.load().count_params() == model.count_params() == 193
    data = store.get_run(run.info.run_id).data
    assert data.metrics["param_count"] == 193
    assert store.search_registered_models() == []
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        mlflow.keras.load_model(logged.model_uri).predict(images, verbose=0),
        model.predict(images, verbose=0),
        rtol=1e-6,
    )


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
