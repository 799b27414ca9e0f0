"""compare_architectures pipeline: one model_training copy per model, the model list from
conf/, the catalog entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from tiny_project import PROJECT

from image_classifiers.pipelines.compare_architectures import create_pipeline
from image_classifiers.pipelines.compare_architectures.pipeline import (
    DEFAULT_MODELS,
    check_model_names,
    configured_models,
)
from image_classifiers.tracking import (
    MlflowCSVDataset,
    MlflowFigureDataset,
    MlflowJSONMetricsDataset,
)


def test_each_model_gets_the_training_pipeline_under_its_namespace():
    pipeline = create_pipeline(models=["a", "b"])
    names = {node.name for node in pipeline.nodes}
    for model in ("a", "b"):
        assert {f"{model}.train_model", f"{model}.summarise_training"} <= names
    assert {"compare_architectures", "plot_architecture_comparison"} <= names
    # Everything a model needs comes from the data pipeline or the parameters.
    assert pipeline.inputs() == {
        "train_set",
        "validation_set",
        "test_set",
        "params:models.a",
        "params:models.b",
        "params:training",
        "params:augmentation",
        "params:evaluation",
        "params:inspection",
    }
    assert pipeline.all_outputs() >= {"architecture_comparison_plot", "a.model", "b.model"}
    compare = next(n for n in pipeline.nodes if n.name == "compare_architectures")
    assert set(compare.inputs) == {"a_training_summary", "b_training_summary"}


def test_the_project_compares_the_configured_models():
    assert configured_models(PROJECT) == ["simple_convnet", "residual_convnet", "mini_xception"]


def test_a_conf_override_changes_the_model_list(tmp_path, monkeypatch):
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "base" / "parameters.yml").write_text(
        "models: {a: {architecture: x}, b: {architecture: y}}\n"
        "compare_architectures: {models: [a, b]}\n"
    )
    (tmp_path / "conf" / "local" / "parameters.yml").write_text(
        "compare_architectures: {models: [b]}\n"
    )
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    assert configured_models(tmp_path) == ["b"]
    monkeypatch.setenv("KEDRO_ENV", "base")  # conf/local is not read then
    assert configured_models(tmp_path) == ["a", "b"]


def test_a_project_without_the_section_falls_back_to_the_defaults(tmp_path):
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "base" / "parameters.yml").write_text("training: {epochs: 1}\n")
    assert configured_models(tmp_path) == list(DEFAULT_MODELS)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "non-empty list"),
        ("a", "non-empty list"),
        (["a", "a"], r"\['a'\] more than once"),
        (["a", "zz"], r"\['zz'\], which have no models.<name>.*choose from: a, b"),
    ],
)
def test_a_bad_model_list_says_how_to_fix_it(names, message):
    with pytest.raises(ValueError, match=message):
        check_model_names(names, {"a": {}, "b": {}})


def test_catalog_declares_the_comparison_outputs(tmp_path: Path):
    config = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    catalog = DataCatalog.from_config(config["catalog"])
    summary = catalog.get("mini_xception_training_summary")
    assert isinstance(summary, MlflowJSONMetricsDataset)
    assert str(summary._filepath).endswith("data/08_reporting/mini_xception/training_summary.json")
    table = catalog.get("architecture_comparison")
    assert isinstance(table, MlflowCSVDataset)
    assert str(table._filepath).endswith("data/08_reporting/architecture_comparison.csv")
    assert isinstance(catalog.get("architecture_comparison_plot"), MlflowFigureDataset)
