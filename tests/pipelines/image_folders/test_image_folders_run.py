"""End to end: `kedro run --env=smoke --pipelines=image_folders` on a generated class-folder zip,
with the acceptance command's parameter spellings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_archives import write_class_folders_zip
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from kedro_mlflow.io.models import MlflowModelTrackingDataset
from project_copies import copy_project, run_pipeline

from image_classifiers.pipelines.image_folders import create_pipeline, create_transfer_pipeline

PROJECT = Path(__file__).resolve().parents[3]


def test_everything_lives_in_the_image_folders_namespace():
    pipeline = create_pipeline()
    assert all(node.namespace == "image_folders" for node in pipeline.nodes)
    assert all(
        name.startswith(("image_folders.", "params:image_folders.")) for name in pipeline.datasets()
    )
    assert "params:image_folders.download" in pipeline.inputs()
    assert "params:image_folders.training" in pipeline.inputs()


def _catalog() -> DataCatalog:
    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")
    return DataCatalog.from_config(loader["catalog"])


@pytest.mark.parametrize("pipeline", [create_pipeline, create_transfer_pipeline])
def test_every_saved_dataset_has_a_file_of_its_own(pipeline):
    catalog = _catalog()
    paths = {}
    for name in pipeline().datasets():
        if name.startswith("params:"):
            continue
        dataset = catalog.get(name)
        path = dataset._describe().get("filepath") if dataset is not None else None
        if ("data_quality" in name and "report" not in name) or "untrained" in name:
            continue  # passed in memory between nodes
        if isinstance(dataset, MlflowModelTrackingDataset | MlflowMetricsHistoryDataset):
            continue  # the model's MLflow run only: the local file is another dataset
        assert path is not None, f"{name} is not saved ({type(dataset).__name__})"
        assert "image_folders" in str(path), (name, path)
        paths[name] = str(path)
    assert len(set(paths.values())) == len(paths)  # no two datasets share a file


@pytest.mark.slow
def test_image_folders_runs_end_to_end_in_the_smoke_env(tmp_path, monkeypatch):
    archive = write_class_folders_zip(tmp_path / "PetImages.zip")
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_pipeline(
        project,
        "image_folders",
        {
            "image_folders": {
                "download": {"local_path": str(archive)},
                "training": {"epochs": 1},
            }
        },
        env="smoke",
    )

    metrics = json.loads((project / "data/08_reporting/image_folders/metrics.json").read_text())
    assert metrics["num_test_images"] == 8
    assert metrics["classes"] == ["Cat", "Dog"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert (project / "data/06_models/image_folders.keras").stat().st_size > 0
    report = json.loads((project / "data/08_reporting/image_folders/data_quality.json").read_text())
    assert report["decoded"] == 32 and report["skipped_count"] == 0
    # xception_cats' data is untouched.
    assert not (project / "data/05_model_input/train").exists()
