"""compare_architectures run end to end through Kedro and kedro-mlflow on a tiny project:
what lands in MLflow for each model, the comparison table, models chosen with --namespaces,
and failed runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.entities import Run
from tiny_project import (
    EPOCHS,
    PROJECT,
    TINY_MODELS,
    end_active_runs,
    image_set,
    make_project,
    run_pipeline,
)

from image_classifiers.core import training
from image_classifiers.datasets import KerasModelDataset
from image_classifiers.pipelines.compare_architectures.nodes import COMPARISON_COLUMNS
from image_classifiers.pipelines.model_training import nodes as model_training_nodes
from image_classifiers.serving import load_classifier

pytestmark = pytest.mark.slow

EXPERIMENT = "image_classifiers"  # conf/base/mlflow.yml
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
MODEL_ARTIFACTS = {
    "training_curves.png",
    "confusion_matrix.png",
    "misclassified.png",
    "feature_maps.png",
    "grad_cam.png",
    "model_summary.txt",
    "data_quality.json",
    "reliability.png",  # the evaluation report
    "top_losses.csv",
    "model_card.md",
}
REPORTS = Path("data/08_reporting")


@pytest.fixture(scope="module")
def tracked_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny project whose MLflow store is ``sqlite:///<project>/tracking.db``."""
    project = make_project(tmp_path_factory.mktemp("tracked") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'tracking.db'}")
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # tiny runs are short
        yield project
        end_active_runs()


@pytest.fixture(scope="module")
def live_history() -> Iterator[dict[str, list[int]]]:
    """Run name -> how many epochs of ``loss`` MLflow held as each epoch ended.

    Read in ExactValidation, the first epoch-end callback, which runs before the one
    sending the epoch to MLflow.
    """
    seen: dict[str, list[int]] = {}
    original = training.ExactValidation.on_epoch_end

    def probe(self, epoch, logs=None):
        original(self, epoch, logs)
        run = mlflow.active_run()
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
        seen.setdefault(run.info.run_name, []).append(len(history))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.ExactValidation, "on_epoch_end", probe)
        yield seen


@pytest.fixture(scope="module")
def runs(tracked_project: Path, live_history: dict[str, list[int]]) -> dict[str, Run]:
    """Runs of one ``kedro run --pipelines=compare_architectures``, by run name."""
    reporting = tracked_project / "data" / "08_reporting"
    reporting.mkdir(parents=True, exist_ok=True)
    (reporting / "data_quality.json").write_text(json.dumps({"skipped": [], "decoded": 32}))
    (tracked_project / "data" / "01_raw").mkdir(parents=True, exist_ok=True)
    (tracked_project / "data" / "01_raw" / "dogs-vs-cats.json").write_text(
        json.dumps({"path": "dogs-vs-cats.zip", "sha256": "ab" * 32, "size": 1})
    )
    run_pipeline(tracked_project, "compare_architectures")
    found = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    return {run.info.run_name: run for run in found}


def model_run(runs: dict[str, Run], model: str) -> Run:
    return runs[f"compare_architectures.{model}"]


def test_one_finished_pipeline_run_with_one_nested_run_per_model(runs):
    assert set(runs) == {"compare_architectures"} | {
        f"compare_architectures.{model}" for model in TINY_MODELS
    }
    parent = runs["compare_architectures"]
    for run in runs.values():
        assert run.info.status == "FINISHED"
    for model in TINY_MODELS:
        assert model_run(runs, model).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert mlflow.active_run() is None


def test_model_runs_have_flattened_parameters_and_tags(runs):
    for model in TINY_MODELS:
        run = model_run(runs, model)
        params, tags = run.data.params, run.data.tags
        assert params["training.epochs"] == str(EPOCHS)
        assert params["training.optimizer"] == "rmsprop"
        assert params["model.architecture"] == model
        assert params[f"models.{model}.architecture"] == model
        assert not any(value.startswith("{") for value in params.values()), "not flattened"
        assert tags["architecture"] == model
        assert tags["model"] == model
        assert tags["keras_backend"] == keras.backend.backend()
        assert tags["device"]
        assert tags["kedro_pipeline"] == "compare_architectures"
        assert tags["dataset_sha256"] == "ab" * 32
    # Each run holds its own model's options, not another's.
    assert model_run(runs, "mini_xception").data.params["model.stem_filters"] == "4"
    assert "model.stem_filters" not in model_run(runs, "simple_convnet").data.params


def test_metric_history_has_one_entry_per_epoch(runs, tracked_project):
    client = mlflow.MlflowClient()
    for model in TINY_MODELS:
        run_id = model_run(runs, model).info.run_id
        saved = json.loads(
            (tracked_project / REPORTS / model / "training_history.json").read_text()
        )
        for key in HISTORY_KEYS:
            history = client.get_metric_history(run_id, key)
            assert [m.step for m in history] == list(range(EPOCHS)), key
            np.testing.assert_allclose([m.value for m in history], saved[key], rtol=1e-6)


def test_metrics_reach_the_model_run_while_it_trains(runs, live_history):
    # Epoch 1 ends with no epoch logged yet, epoch 2 with epoch 1 already in MLflow.
    assert live_history == {
        f"compare_architectures.{model}": list(range(EPOCHS)) for model in TINY_MODELS
    }
    client = mlflow.MlflowClient()
    for model in TINY_MODELS:
        history = client.get_metric_history(model_run(runs, model).info.run_id, "loss")
        # Each epoch is stamped when it ended, not all at once after training.
        assert history[0].timestamp < history[1].timestamp


def test_model_runs_record_system_metrics(runs):
    for model in TINY_MODELS:
        metrics = model_run(runs, model).data.metrics
        assert "system/cpu_utilization_percentage" in metrics
        assert "system/system_memory_usage_megabytes" in metrics


def test_model_runs_list_the_image_sets_they_trained_and_were_tested_on(runs, tracked_project):
    digests = set()
    for model in TINY_MODELS:
        inputs = model_run(runs, model).inputs.dataset_inputs
        by_name = {item.dataset.name: item for item in inputs}
        assert set(by_name) == {"train_set", "validation_set", "test_set"}
        for name, context in (("train_set", "training"), ("test_set", "testing")):
            item = by_name[name]
            assert [tag.value for tag in item.tags if tag.key == "mlflow.data.context"] == [context]
            source = json.loads(item.dataset.source)["uri"]
            split = name.removesuffix("_set")
            assert Path(source) == tracked_project / "data" / "05_model_input" / split
        digests.add(tuple(sorted((n, i.dataset.digest) for n, i in by_name.items())))
    # Both models saw the same data, and the three splits differ.
    (only,) = digests
    assert len({digest for _, digest in only}) == 3


def test_test_metrics_and_artifacts_are_logged_to_the_model_run(runs, tracked_project):
    client = mlflow.MlflowClient()
    for model in TINY_MODELS:
        run = model_run(runs, model)
        saved = json.loads((tracked_project / REPORTS / model / "metrics.json").read_text())
        for key in ("test_accuracy", "test_loss", "test_f1"):
            assert run.data.metrics[key] == pytest.approx(saved[key])
        assert run.data.metrics["param_count"] > 0
        assert run.data.metrics["train_seconds"] > 0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts >= MODEL_ARTIFACTS
        summary = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/model_summary.txt")
        assert "Total params" in summary


def test_each_model_is_registered_and_the_version_loads_and_predicts(runs, tracked_project):
    client = mlflow.MlflowClient()
    # Each under a name of its own (Keras flavor), none under the serving model's.
    assert {m.name for m in client.search_registered_models()} == {
        f"{model}_keras" for model in TINY_MODELS
    }
    images = image_set(4, seed=99)["images"].astype("float32")
    for model in TINY_MODELS:
        (version,) = client.search_model_versions(f"name='{model}_keras'")
        assert version.run_id == model_run(runs, model).info.run_id
        uri = f"models:/{model}_keras/{version.version}"
        local_file = tracked_project / f"data/06_models/{model}.keras"
        local = KerasModelDataset(str(local_file)).load()
        expected = local.predict(images, verbose=0)
        np.testing.assert_allclose(
            mlflow.keras.load_model(uri).predict(images, verbose=0), expected, rtol=1e-5
        )
        # The generic pyfunc interface checks inputs against the logged signature.
        pyfunc = mlflow.pyfunc.load_model(uri)
        assert pyfunc.metadata.signature.inputs.inputs[0].shape == (-1, 32, 32, 3)
        np.testing.assert_allclose(pyfunc.predict(images), expected, rtol=1e-5)
        # The model card is the version's description; predict finds the run's temperature.
        card = (tracked_project / REPORTS / model / "model_card.md").read_text()
        assert version.description == card and card.startswith("# Model card:")
        saved = json.loads((tracked_project / REPORTS / model / "metrics.json").read_text())
        assert load_classifier(uri).temperature == pytest.approx(saved["temperature"])


def test_comparison_has_one_row_per_model_and_is_logged_to_the_pipeline_run(runs, tracked_project):
    table = pd.read_csv(tracked_project / "data/08_reporting/architecture_comparison.csv")
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert sorted(table["model"]) == sorted(TINY_MODELS)
    for row in table.itertuples():
        run = model_run(runs, row.model)
        assert row.params == run.data.metrics["param_count"]
        assert row.test_accuracy == pytest.approx(run.data.metrics["test_accuracy"])
        assert row.epochs == EPOCHS
    parent = runs["compare_architectures"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"architecture_comparison.csv", "architecture_comparison.png"} <= artifacts


def test_a_failing_node_marks_the_runs_failed_in_the_default_store(tmp_path, monkeypatch):
    project = make_project(tmp_path / "failing")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store
    previous_uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()

    def failing_metrics(*args, **kwargs):
        raise ValueError("evaluation fails on purpose")

    # evaluate_model fails for the first model evaluated, after all were built (and not)
    # trained. (A bad parameter would not do: it stops the run before any node.)
    monkeypatch.setattr(model_training_nodes, "classification_metrics", failing_metrics)
    try:
        with pytest.raises(ValueError, match="evaluation fails on purpose"):
            run_pipeline(
                project,
                "compare_architectures",
                runtime_params={"training": {"epochs": 0}},  # no need to train for this
            )
    finally:
        # kedro-mlflow pointed the process at this project's store; the other tests use theirs.
        mlflow.set_tracking_uri(previous_uris[0])
        mlflow.set_registry_uri(previous_uris[1])
    assert mlflow.active_run() is None
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (project / "mlartifacts").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    found = client.search_runs([experiment.experiment_id])
    statuses = {run.info.run_name: run.info.status for run in found}
    # The pipeline's run and every model run, all left incomplete.
    assert statuses == {
        "compare_architectures": "FAILED",
        **{f"compare_architectures.{model}": "FAILED" for model in TINY_MODELS},
    }
    assert not list((project / "data/08_reporting").glob("architecture_comparison.*"))


def test_namespaces_choose_the_models_trained(tmp_path, monkeypatch):
    project = make_project(tmp_path / "chosen")
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'tracking.db'}")
    end_active_runs()
    bootstrap_project(project)
    try:
        # kedro run --pipelines=compare_architectures --namespaces=residual_convnet
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_names=["compare_architectures"], namespaces=["residual_convnet"])
    finally:
        bootstrap_project(PROJECT)
    models = sorted(p.name for p in (project / "data/06_models").iterdir())
    assert models == ["residual_convnet.calibration.json", "residual_convnet.keras"]
    assert not (project / "data/08_reporting/architecture_comparison.csv").exists()
    found = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(EXPERIMENT).experiment_id]
    )
    runs = {run.info.run_name: run for run in found}
    assert set(runs) == {"compare_architectures", "compare_architectures.residual_convnet"}
    model = runs["compare_architectures.residual_convnet"]
    assert model.data.tags["mlflow.parentRunId"] == runs["compare_architectures"].info.run_id
    assert model.data.metrics["train_seconds"] > 0
