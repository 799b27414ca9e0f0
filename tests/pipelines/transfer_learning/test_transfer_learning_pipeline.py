"""The transfer_learning pipeline: structure, catalog entries per base, a whole smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from project_copies import without_mlflow
from transfer_helpers import image_set

from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    InspectionParams,
    TrainingParams,
    TransferParams,
)
from image_classifiers.core.training import cross_entropy, predict_probabilities
from image_classifiers.datasets import KerasModelDataset
from image_classifiers.pipelines.model_training.pipeline import evaluation_pipeline
from image_classifiers.pipelines.transfer_learning import create_pipeline

PROJECT = Path(__file__).resolve().parents[3]
# The typed groups Kedro validates the parameters into before a run.
GROUPS = {
    "transfer": TransferParams,
    "training": TrainingParams,
    "augmentation": AugmentationParams,
    "evaluation": EvaluationParams,
    "inspection": InspectionParams,
}
PARAMETERS = set(GROUPS)
BASE = "vgg16"  # the default: no runtime parameter needed, the smallest traced graph


def project_config(env: str, runtime_params: dict | None = None) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
        runtime_params=runtime_params,
    )


def test_pipeline_is_namespaced_with_shared_inputs():
    pipeline = create_pipeline()
    assert [node.name for node in pipeline.nodes] == [
        "transfer.build_transfer_model",
        "transfer.train_feature_extractor",
        "transfer.feature_extraction.calibrate_model",
        "transfer.fine_tune_model",
        "transfer.calibrate_model",
        "transfer.feature_extraction.evaluate_model",
        "transfer.inspect_model",
        "transfer.plot_training_curves",
        "transfer.evaluate_model",
        "transfer.log_feature_extraction_metrics",
        "transfer.log_to_mlflow",
        "transfer.write_model_card",
    ]
    assert pipeline.inputs() == {"train_set", "validation_set", "test_set"} | {
        f"params:{name}" for name in PARAMETERS
    }
    outputs = pipeline.all_outputs()
    assert {"transfer.model", "transfer.metrics", "transfer.training_history"} <= outputs
    # Both phases evaluated by the shared evaluation pipeline (phase 1: its metrics only).
    assert {"transfer.feature_extraction_metrics", "transfer.grad_cam_plot"} <= outputs
    (phase_1,) = pipeline.only_nodes("transfer.feature_extraction.evaluate_model").nodes
    assert phase_1.func is evaluation_pipeline().only_nodes("evaluate_model").nodes[0].func


@pytest.mark.parametrize("runtime_params", [None, {"transfer": {"base": "xception"}}])
def test_every_output_has_an_entry_named_alike_whatever_the_base(runtime_params):
    config = project_config("base", runtime_params)
    catalog = DataCatalog.from_config(config["catalog"])
    # Declared (by name or pattern), not left to Kedro's default MemoryDataset (which would
    # deep-copy a Keras model).
    for dataset in create_pipeline().all_outputs():
        assert dataset in catalog, dataset
    model = catalog.get("transfer.model")
    assert isinstance(model, KerasModelDataset)
    assert model._describe()["filepath"] == "data/06_models/transfer.keras"
    metrics = catalog.get("transfer.feature_extraction_metrics")
    assert str(metrics._filepath).endswith(
        "data/08_reporting/transfer/feature_extraction_metrics.json"
    )
    untrained = catalog.get("transfer.untrained_model")
    assert isinstance(untrained, MemoryDataset) and untrained._copy_mode == "assign"


@pytest.mark.slow
def test_smoke_run_with_a_real_base(tmp_path, monkeypatch):
    """What ``kedro run --pipelines=transfer_learning --env=smoke`` does (VGG16, 32x32)."""
    monkeypatch.chdir(tmp_path)  # the catalog's data/... paths are relative
    config = project_config("smoke")
    catalog = DataCatalog.from_config(config["catalog"])
    test_set = image_set(8, seed=2)
    for name, split in (("train", image_set(16, 0)), ("validation", image_set(8, 1))):
        catalog[f"{name}_set"] = split
    catalog["test_set"] = test_set
    parameters = config["parameters"]
    assert parameters["transfer"]["weights"] is None  # smoke: nothing to download
    assert parameters["transfer"]["base"] == BASE
    for name, group in GROUPS.items():
        catalog[f"params:{name}"] = group.model_validate(parameters[name])

    SequentialRunner().run(without_mlflow(create_pipeline(), catalog), catalog)

    reports = tmp_path / "data/08_reporting/transfer"
    for png in (
        "training_curves.png",
        "confusion_matrix.png",
        "feature_extraction_misclassified.png",
        "feature_maps.png",
        "grad_cam.png",
    ):
        assert (reports / png).stat().st_size > 1000
    history = json.loads((reports / "training_history.json").read_text())
    assert history["phase"] == ["feature_extraction", "fine_tuning"]
    assert history["epoch"] == [1, 2]
    assert history["learning_rate"] == pytest.approx([1e-3, 1e-5])
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["num_test_images"] == 8
    models = tmp_path / "data/06_models"
    assert (models / "transfer_feature_extraction.keras").is_file()
    for phase in ("transfer_feature_extraction", "transfer"):  # each model's temperature
        assert json.loads((models / f"{phase}.calibration.json").read_text())["temperature"] > 0
    model = KerasModelDataset(str(models / "transfer.keras")).load()
    assert model.name == f"transfer_{BASE}"
    # The reloaded model predicts what was evaluated.
    probabilities = predict_probabilities(model, test_set["images"], batch_size=8)
    assert cross_entropy(probabilities, test_set["labels"]) == pytest.approx(
        metrics["test_loss"], rel=1e-5
    )
    assert np.all((probabilities >= 0) & (probabilities <= 1))
