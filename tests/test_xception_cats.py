"""End to end: `kedro run --env=smoke --pipelines=xception_cats` on a generated archive.

The project's own conf/ is copied into a temp project so that the run writes its data,
models, reports and MLflow store there and never into the working copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from fixture_archives import write_archive
from kedro.framework.project import pipelines as project_pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from project_copies import copy_project

from image_classifiers.core.models.transfer import WeightsError
from image_classifiers.pipeline_registry import register_pipelines

PROJECT = Path(__file__).resolve().parents[1]


def smoke_run(tmp_path: Path, monkeypatch, runtime_params: dict | None = None) -> Path:
    """``kedro run --env=smoke --pipelines=xception_cats`` in a copy of the project."""
    project = copy_project(tmp_path / "project")
    archive = write_archive(tmp_path / "dogs-vs-cats.zip", indices=range(16))
    monkeypatch.chdir(project)  # parameters such as download.archive_path are relative
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    bootstrap_project(project)
    try:
        with KedroSession.create(
            project_path=project,
            env="smoke",
            runtime_params={"download": {"local_path": str(archive)}, **(runtime_params or {})},
        ) as session:
            session.run(pipeline_names=["xception_cats"])
    finally:
        bootstrap_project(PROJECT)
    return project


def test_the_pretrained_base_is_fetched_before_any_model_trains():
    bootstrap_project(PROJECT)
    pipelines = register_pipelines()
    names = [node.name for node in pipelines["xception_cats"].nodes]  # execution order
    training = ["mini_xception.train_model", "transfer.train_feature_extractor"]
    assert names.index("transfer.build_transfer_model") < min(map(names.index, training))
    # The two models share the splits and nothing else: no input of either stage only
    # orders it after the other.
    transfer = pipelines["xception_cats"].only_nodes_with_namespaces(["transfer"])
    assert not {name for name in transfer.inputs() if name.startswith("mini_xception.")}
    assert transfer.inputs() - pipelines["transfer_learning"].inputs() == set()


def test_kedro_loads_only_the_requested_pipelines_and_finds_the_assembled_ones():
    # `kedro run --pipelines=xception_cats` asks Kedro 1.7 for that folder alone.
    bootstrap_project(PROJECT)
    try:
        for name in ("xception_cats", "image_folders_transfer"):
            project_pipelines.set_requested([name])
            assert name in project_pipelines
            assert "compare_architectures" not in project_pipelines  # not even imported
    finally:
        project_pipelines.set_requested(None)
    assert project_pipelines["__default__"].nodes == project_pipelines["xception_cats"].nodes


@pytest.mark.slow
def test_xception_cats_runs_end_to_end_in_the_smoke_env(tmp_path, monkeypatch):
    project = smoke_run(tmp_path, monkeypatch)

    assert (project / "data/06_models/mini_xception.keras").stat().st_size > 0
    reports = project / "data/08_reporting/mini_xception"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["num_test_images"] == 8  # 4 per class in the smoke split
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0
    for png in ("training_curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (reports / png).read_bytes()[:4] == b"\x89PNG"
    # The transfer-learning stage (random weights in the smoke env) ran on the same splits.
    assert (project / "data/06_models/transfer.keras").is_file()


@pytest.mark.slow
def test_unreachable_weights_stop_xception_cats_before_any_training(tmp_path, monkeypatch):
    # Offline, weights: imagenet fails the same way (WeightsError) as this missing file.
    missing = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(WeightsError, match=r"transfer\.weights=/path/to/vgg16_weights"):
        smoke_run(tmp_path, monkeypatch, {"transfer": {"weights": str(missing)}})

    project = tmp_path / "project"
    assert (project / "data/05_model_input/train").exists()  # the data stage is kept
    assert not list((project / "data/06_models").glob("*.keras"))  # nothing trained
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["image_classifiers"])
    status = {row["tags.model"]: row["status"] for _, row in runs.iterrows()}
    # The runs that began (the pipeline's and both models') are closed as FAILED.
    assert status["transfer"] == status["mini_xception"] == "FAILED"
    assert set(status.values()) == {"FAILED"}
