"""compare_architectures pipeline: the model_training pipeline once per model, in namespaces
of their names, then the comparison; its catalog entries."""

from __future__ import annotations

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro_mlflow.io.metrics import MlflowMetricDataset
from tiny_project import PROJECT

from image_classifiers.datasets.atomic import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
)
from image_classifiers.pipelines import model_training
from image_classifiers.pipelines.compare_architectures import MODELS, create_pipeline


def test_each_model_is_the_model_training_pipeline_in_its_own_namespace():
    pipeline = create_pipeline()
    assert MODELS == ("simple_convnet", "residual_convnet", "mini_xception")
    for model in MODELS:
        trained = {n.name for n in model_training.create_pipeline(model).nodes}
        ours = {n.name for n in pipeline.nodes if n.namespace == model}
        assert ours == trained | {f"{model}.summarise_training"}
        assert f"params:models.{model}" in pipeline.inputs()
    assert pipeline.inputs() == {
        "train_set",
        "validation_set",
        "test_set",
        "params:training",
        "params:augmentation",
        "params:evaluation",
        "params:inspection",
        *(f"params:models.{model}" for model in MODELS),
    }


def test_the_comparison_reads_every_summary_so_it_runs_last():
    pipeline = create_pipeline()
    (compare,) = pipeline.only_nodes("compare_architectures").nodes
    assert set(compare.inputs) == {f"{model}.architecture_summary" for model in MODELS}
    assert compare.namespace is None  # logs to the pipeline's MLflow run
    order = [n.name for n in pipeline.nodes]  # execution order
    summaries = [n.name for n in pipeline.nodes if set(n.outputs) & set(compare.inputs)]
    assert len(summaries) == len(MODELS)
    last_summary = max(order.index(name) for name in summaries)
    assert last_summary < order.index("compare_architectures")
    assert order.index("compare_architectures") < order.index("plot_architecture_comparison")


def test_namespaces_choose_models_at_run_time():
    # `kedro run --pipelines=compare_architectures --namespaces=mini_xception` applies this.
    chosen = create_pipeline().filter(node_namespaces=["mini_xception"])
    assert {n.namespace for n in chosen.nodes} == {"mini_xception"}
    assert {"train_set", "params:models.mini_xception"} <= chosen.inputs()


def test_catalog_declares_the_comparison_outputs():
    config = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    catalog = DataCatalog.from_config(config["catalog"])
    summary = catalog.get("mini_xception.architecture_summary")
    assert isinstance(summary, AtomicJSONDataset)
    assert str(summary._filepath).endswith("08_reporting/mini_xception/architecture_summary.json")
    seconds = catalog.get("residual_convnet.train_seconds")
    assert isinstance(seconds, MlflowMetricDataset) and seconds.key == "train_seconds"
    for name, kind, suffix in (
        ("architecture_comparison", AtomicCSVDataset, "csv"),
        ("architecture_comparison_plot", AtomicMatplotlibDataset, "png"),
    ):
        dataset = catalog.get(name)
        # kedro-mlflow's wrapper subclasses the dataset it wraps, logging each save.
        assert isinstance(dataset, kind) and type(dataset).__name__ == f"Mlflow{kind.__name__}"
        assert str(dataset._filepath).endswith(
            f"data/08_reporting/architecture_comparison.{suffix}"
        )
