"""The experiment pipelines end to end in the smoke environment, on generated Keras-format
files: each writes its model, metrics and figures under its own namespace's paths."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fixture_archives import write_cifar_archive, write_fashion_folder, write_mnist_npz
from project_copies import copy_project, run_pipeline

from image_classifiers.pipelines.cnn_cifar10 import VARIANTS, variant_namespace
from image_classifiers.pipelines.cnn_cifar10 import pipeline as cnn_cifar10
from image_classifiers.pipelines.cnn_cifar10.nodes import compare_variants, summarise_variant
from image_classifiers.pipelines.lenet_mnist import pipeline as lenet_mnist
from image_classifiers.pipelines.model_training.pipeline import evaluation_pipeline
from image_classifiers.pipelines.vgg16_cifar10 import pipeline as vgg16_cifar10

REPORTS = ("metrics.json", "training_curves.png", "grad_cam.png", "feature_maps.png")


def _check_reports(project: Path, name: str) -> dict:
    reports = project / "data/08_reporting" / name
    for report in REPORTS:
        assert (reports / report).stat().st_size > 100, report
    assert (project / f"data/06_models/{name}.keras").is_file()
    return json.loads((reports / "metrics.json").read_text())


def _local_path(data: str, path: Path) -> dict:
    """``--params="<data>.download.local_path=<path>"`` as Kedro passes it on."""
    return {data: {"download": {"local_path": str(path)}}}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


def test_every_model_is_evaluated_by_the_shared_evaluation_pipeline():
    evaluation = {node.name for node in evaluation_pipeline().nodes}
    for module in (lenet_mnist, cnn_cifar10, vgg16_cifar10):
        pipeline = module.create_pipeline()
        for namespace in {n.namespace for n in pipeline.nodes if n.name.endswith(".train_model")}:
            names = {n.name for n in pipeline.nodes}
            assert {f"{namespace}.{name}" for name in evaluation} <= names, namespace
    transfer = {n.name for n in vgg16_cifar10.create_pipeline().nodes}
    assert {f"vgg16_cifar10.{name}" for name in evaluation} <= transfer


def test_each_experiment_lives_in_its_own_namespace():
    seen: dict[str, str] = {}
    for module in (lenet_mnist, cnn_cifar10, vgg16_cifar10):
        pipeline = module.create_pipeline()
        for dataset in pipeline.datasets() - pipeline.inputs():
            top = dataset.split(".", 1)[0]
            assert top.startswith(module.NAMESPACE), dataset
            assert seen.setdefault(dataset, module.NAMESPACE) == module.NAMESPACE
        # The dataset's own parameter groups: one spelling shared by every experiment on it.
        assert f"params:{module.DATA}.download" in pipeline.inputs()
    study = cnn_cifar10.create_pipeline()
    assert {node.namespace.split(".")[0] for node in study.nodes} == {
        "cnn_cifar10",
        *(variant_namespace(variant) for variant in VARIANTS),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pipeline", "data", "write"),
    [
        ("lenet_mnist", "mnist", lambda d: write_mnist_npz(d / "mnist.npz")),
        ("cnn_fashion_mnist", "fashion_mnist", lambda d: write_fashion_folder(d / "fashion")),
    ],
)
def test_grayscale_experiments_run_in_smoke(project, tmp_path, pipeline, data, write):
    source = write(tmp_path)
    run_pipeline(project, pipeline, _local_path(data, source), env="smoke")
    metrics = _check_reports(project, pipeline)
    assert metrics["num_test_images"] == 20 and 0 <= metrics["test_accuracy"] <= 1
    assert (project / f"data/05_model_input/{pipeline}/train").is_dir()
    assert not (project / "data/05_model_input/train").exists()  # xception_cats' data untouched


@pytest.mark.slow
def test_cifar10_study_runs_every_variant_and_compares_them(project, tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    run_pipeline(project, "cnn_cifar10", _local_path("cifar10", archive), env="smoke")
    for variant in VARIANTS:
        _check_reports(project, variant_namespace(variant))
    table = pd.read_csv(project / "data/08_reporting/cnn_cifar10/variant_comparison.csv")
    assert table["variant"].tolist() == list(VARIANTS)
    assert (project / "data/08_reporting/cnn_cifar10/variant_comparison.png").stat().st_size > 1000


@pytest.mark.slow
def test_vgg16_cifar10_runs_in_smoke(project, tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    run_pipeline(project, "vgg16_cifar10", _local_path("cifar10", archive), env="smoke")
    metrics = _check_reports(project, "vgg16_cifar10")
    assert metrics["num_test_images"] == 20
    assert (project / "data/08_reporting/vgg16_cifar10/feature_extraction_metrics.json").is_file()


def _summary(accuracy: float, val_accuracy: float, test_accuracy: float) -> dict:
    history = {
        "accuracy": [0.5, accuracy],
        "val_accuracy": [0.5, val_accuracy],
        "loss": [1.0, 0.5],
        "val_loss": [0.9, 1.1],
    }
    return summarise_variant({"test_accuracy": test_accuracy, "test_loss": 1.0}, history)


def test_the_study_table_shows_the_overfitting_gap():
    baseline = _summary(0.99, 0.70, 0.69)
    assert baseline["overfitting_gap"] == pytest.approx(0.29)
    assert baseline["best_epoch"] == 1  # the lowest validation loss, whose weights were kept
    table, figure = compare_variants(baseline=baseline, batch_norm=_summary(0.85, 0.80, 0.79))
    assert table["variant"].tolist() == ["baseline", "batch_norm"]  # the study's order
    assert table["overfitting_gap"].round(2).tolist() == [0.29, 0.05]
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="lack"):
        summarise_variant({"test_accuracy": 0.5}, {"loss": []})
