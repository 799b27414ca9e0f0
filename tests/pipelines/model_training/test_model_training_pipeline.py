"""The model_training pipeline: namespacing, the project's catalog factories, a whole run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from project_copies import without_mlflow

from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    InspectionParams,
    ModelOptions,
    TrainingParams,
)
from image_classifiers.datasets import ImageSetDataset, KerasModelDataset
from image_classifiers.pipelines.model_training import create_pipeline

PROJECT = Path(__file__).resolve().parents[3]
OUTPUTS = {
    "model",
    "mlflow_model",  # the same model and metrics, logged to its MLflow run
    "mlflow_metrics",
    "model_summary",
    "training_history",
    "metrics",
    "training_curves_plot",
    "confusion_matrix_plot",
    "misclassified_plot",
    "feature_maps_plot",
    "grad_cam_plot",
    "calibration",  # the evaluation report
    "reliability_plot",
    "top_losses",
    "model_card",
}


def project_config(env: str = "smoke") -> OmegaConfigLoader:
    return OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )


def test_pipeline_is_namespaced_per_model_with_shared_inputs():
    pipeline = create_pipeline("tiny")
    assert {node.name for node in pipeline.nodes} == {
        "tiny.build_model",
        "tiny.train_model",
        "tiny.evaluate_model",
        "tiny.inspect_model",
        "tiny.plot_training_curves",
        "tiny.log_to_mlflow",
        "tiny.calibrate_model",
        "tiny.write_model_card",
    }
    assert pipeline.inputs() == {
        "train_set",
        "validation_set",
        "test_set",
        "params:models.tiny",
        "params:training",
        "params:augmentation",
        "params:evaluation",
        "params:inspection",
    }
    assert pipeline.all_outputs() == {f"tiny.{name}" for name in OUTPUTS | {"untrained_model"}}
    # Two models side by side share the data but nothing they produce.
    both = create_pipeline("tiny") + create_pipeline("other")
    assert len(both.nodes) == 16


def test_catalog_factories_resolve_every_output_without_touching_the_splits():
    catalog = DataCatalog.from_config(project_config("base")["catalog"])
    model = catalog.get("mini_xception.model")
    assert isinstance(model, KerasModelDataset)
    assert model._describe()["filepath"] == "data/06_models/mini_xception.keras"
    metrics = catalog.get("mini_xception.metrics")
    assert str(metrics._filepath).endswith("data/08_reporting/mini_xception/metrics.json")
    untrained = catalog.get("mini_xception.untrained_model")
    assert isinstance(untrained, MemoryDataset) and untrained._copy_mode == "assign"
    assert isinstance(catalog.get("train_set"), ImageSetDataset)
    # Every dataset the pipeline makes is declared by a pattern: none falls back to
    # Kedro's default MemoryDataset (which would deep-copy a Keras model or lose a file).
    pipeline = create_pipeline("mini_xception")
    resolver = catalog.config_resolver
    for name in pipeline.datasets() - pipeline.inputs():
        assert resolver.match_dataset_pattern(name), name


def _image_set(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    base = np.where(labels == 0, 60, 190)[:, None, None, None]
    images = np.clip(rng.normal(base, 30, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return {"images": images, "labels": labels, "classes": ["cat", "dog"], "files": []}


@pytest.mark.slow
def test_pipeline_runs_with_the_project_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the catalog's data/... paths are relative
    config = project_config("smoke")
    catalog = DataCatalog.from_config(config["catalog"])
    for split, n in (("train", 16), ("validation", 8), ("test", 8)):
        catalog[f"{split}_set"] = _image_set(n, seed=len(split))
    parameters = config["parameters"]
    # The typed groups Kedro validates the parameters into before a run.
    catalog["params:models.tiny"] = ModelOptions(architecture="simple_convnet", filters=[4])
    groups = {
        "training": TrainingParams,
        "augmentation": AugmentationParams,
        "evaluation": EvaluationParams,
        "inspection": InspectionParams,
    }
    for name, group in groups.items():
        catalog[f"params:{name}"] = group.model_validate(parameters[name])

    SequentialRunner().run(without_mlflow(create_pipeline("tiny"), catalog), catalog)

    reports = tmp_path / "data/08_reporting/tiny"
    pngs = ("training_curves", "confusion_matrix", "misclassified", "feature_maps", "grad_cam")
    for png in (f"{name}.png" for name in (*pngs, "reliability")):
        assert (reports / png).stat().st_size > 1000
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["num_test_images"] == 8 and 0 <= metrics["test_accuracy"] <= 1
    assert sum(row["support"] for row in metrics["per_class"].values()) == 8
    calibration = json.loads((tmp_path / "data/06_models/tiny.calibration.json").read_text())
    assert metrics["temperature"] == calibration["temperature"] > 0
    losses = (reports / "top_losses.csv").read_text().splitlines()
    assert losses[0] == "file,true_class,predicted_class,probability,loss"
    assert len(losses) == 1 + metrics["num_misclassified"]
    assert "# Model card: " in (reports / "model_card.md").read_text()
    history = json.loads((reports / "training_history.json").read_text())
    assert len(history["val_loss"]) == parameters["training"]["epochs"]
    model = KerasModelDataset(str(tmp_path / "data/06_models/tiny.keras")).load()
    assert model.input_shape == (None, 32, 32, 3)


@pytest.mark.slow
def test_improved_recipe_loads_and_trains(tmp_path, monkeypatch):
    parameters = project_config("improved")["parameters"]
    book = project_config("local")["parameters"]
    # The environment replaces single keys (soft merge) and keeps the rest of conf/base and
    # of the defaults (image_classifiers.core.params).
    training = TrainingParams.model_validate(parameters["training"])
    book_training = TrainingParams.model_validate(book["training"])
    assert training.optimizer == "adamw" and book_training.optimizer == "rmsprop"
    assert training.schedule == "cosine" and training.warmup_epochs > 0
    assert training.label_smoothing > 0 and parameters["evaluation"]["test_time_flip"]
    assert parameters["augmentation"]["translation"] > 0
    for key in ("batch_size", "seed", "epochs"):
        assert getattr(training, key) == getattr(book_training, key)
    assert parameters["models"] == book["models"]  # same architecture options

    # It trains, tiny: the recipe's every option on, only the budget cut.
    monkeypatch.chdir(tmp_path)
    catalog = DataCatalog.from_config(project_config("smoke")["catalog"])
    for split, n in (("train", 16), ("validation", 8), ("test", 8)):
        catalog[f"{split}_set"] = _image_set(n, seed=len(split))
    catalog["params:models.tiny"] = ModelOptions(architecture="simple_convnet", filters=[4])
    catalog["params:training"] = TrainingParams.model_validate(
        {**parameters["training"], "epochs": 5, "batch_size": 8}
    )
    catalog["params:augmentation"] = AugmentationParams.model_validate(parameters["augmentation"])
    catalog["params:evaluation"] = EvaluationParams.model_validate(
        {**parameters["evaluation"], "batch_size": 8}
    )
    catalog["params:inspection"] = InspectionParams(grad_cam_grid=2, feature_map_layers=1)

    SequentialRunner().run(without_mlflow(create_pipeline("tiny"), catalog), catalog)

    reports = tmp_path / "data/08_reporting/tiny"
    history = json.loads((reports / "training_history.json").read_text())
    rates = history["learning_rate"]
    assert len(rates) == 5 and rates[0] < rates[1] < rates[2]  # warm-up
    assert rates[2] > rates[3] > rates[4]  # then the cosine decay
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["num_test_images"] == 8 and math.isfinite(metrics["test_loss"])
