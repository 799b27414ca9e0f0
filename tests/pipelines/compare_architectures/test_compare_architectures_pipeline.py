"""compare_architectures pipeline: one DAG whatever the model list, its catalog entries, and
bad model lists stopped before any node runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from kedro.config import OmegaConfigLoader
from kedro.framework.cli.project import run as kedro_run_command
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro.validation import ParameterValidationError
from kedro_datasets.partitions import PartitionedDataset
from tiny_project import PROJECT, end_active_runs, make_project

from image_classifiers.datasets import KerasModelDataset
from image_classifiers.datasets.atomic import AtomicJSONDataset, AtomicMatplotlibDataset
from image_classifiers.pipelines.compare_architectures import create_pipeline
from image_classifiers.tracking import MlflowCSVDataset, MlflowFigureDataset


def test_the_dag_is_fixed_and_reads_the_model_list_when_it_runs(monkeypatch):
    def no_config(*args, **kwargs):
        raise AssertionError("conf/ read while the pipeline was created")

    monkeypatch.setattr(OmegaConfigLoader, "__getitem__", no_config)
    pipeline = create_pipeline()
    assert [n.name for n in pipeline.nodes] == [
        "train_architectures",
        "compare_architectures",
        "plot_architecture_comparison",
    ]
    # The list and every model's options are parameters of the training node.
    assert pipeline.inputs() == {
        "train_set",
        "validation_set",
        "test_set",
        "params:compare_architectures",
        "params:models",
        "params:training",
        "params:augmentation",
        "params:evaluation",
        "params:inspection",
    }
    assert pipeline.all_outputs() >= {
        "architecture_models",
        "architecture_reports",
        "architecture_plots",
        "architecture_comparison",
        "architecture_comparison_plot",
    }


def test_catalog_declares_the_comparison_outputs():
    config = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    catalog = DataCatalog.from_config(config["catalog"])
    models = catalog.get("architecture_models")
    assert isinstance(models, PartitionedDataset)
    assert models._dataset_type is KerasModelDataset
    assert models._filename_suffix == ".keras" and not models._save_lazily
    assert str(models._path).endswith("data/06_models/compare_architectures")
    for name, kind, suffix in (
        ("architecture_reports", AtomicJSONDataset, ".json"),
        ("architecture_plots", AtomicMatplotlibDataset, ".png"),
    ):
        partitions = catalog.get(name)
        assert partitions._dataset_type is kind and partitions._filename_suffix == suffix
        assert str(partitions._path).endswith("data/08_reporting/compare_architectures")
    assert isinstance(catalog.get("architecture_summaries"), AtomicJSONDataset)
    table = catalog.get("architecture_comparison")
    assert isinstance(table, MlflowCSVDataset)
    assert str(table._filepath).endswith("data/08_reporting/architecture_comparison.csv")
    assert isinstance(catalog.get("architecture_comparison_plot"), MlflowFigureDataset)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("bad_lists") / "project")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("models", "error", "message"),
    [
        ("tiny_a nope", ValueError, "compare_architectures.models lists ['nope'], which have"),
        ("tiny_a zz", ValueError, "choose from: alexnet, googlenet, lenet, mini_xception,"),
        ("", ValueError, "compare_architectures.models is empty; choose from: alexnet,"),
        ("tiny_b tiny_b", ValueError, "compare_architectures.models lists ['tiny_b'] more"),
        ("tiny_a,compare_architectures.modles=x", ParameterValidationError, "'modles'"),
    ],
)
def test_a_bad_model_list_stops_kedro_run_before_any_node(
    tiny_project, monkeypatch, models, error, message
):
    monkeypatch.chdir(tiny_project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tiny_project / 'tracking.db'}")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    end_active_runs()
    bootstrap_project(tiny_project)
    try:
        result = CliRunner().invoke(
            kedro_run_command,
            [
                "--pipelines=compare_architectures",
                f"--params=compare_architectures.models={models}",
            ],
        )
    finally:
        bootstrap_project(PROJECT)
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert isinstance(result.exception, error), result.output
    assert message in str(result.exception)
    # No node ran: nothing trained, nothing written, no MLflow run.
    assert not (tiny_project / "data" / "06_models").exists()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_project / 'tracking.db'}")
    experiment = client.get_experiment_by_name("image_classifiers")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
