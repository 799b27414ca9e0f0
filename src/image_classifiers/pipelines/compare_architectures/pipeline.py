"""The compare_architectures pipeline: model_training once per model, then a comparison.

Each of ``MODELS`` trains in a namespace of its name (its own MLflow run); the comparison
runs last. A list in code: Kedro fixes a DAG when it registers it."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines import model_training
from image_classifiers.pipelines.experiment import quietly

from .nodes import compare_architectures, plot_architecture_comparison, summarise_training

#: Keys of the ``models`` parameters (conf/base/parameters_model_training.yml).
MODELS = ("simple_convnet", "residual_convnet", "mini_xception")


def create_pipeline(models: tuple[str, ...] = MODELS, **kwargs) -> Pipeline:
    """Train, evaluate and summarise each of ``models``, then compare them."""
    inputs = ["model", "metrics", "training_history", "params:model_options"]
    outputs = ["architecture_summary", "train_seconds"]
    summary = Node(summarise_training, inputs, outputs, name="summarise_training")
    trained = [
        model_training.create_pipeline(model)
        + Pipeline(
            [summary],
            namespace=model,
            parameters={"params:model_options": f"params:models.{model}"},
        )
        for model in models
    ]
    summaries = {model: f"{model}.architecture_summary" for model in models}
    table, plot = "architecture_comparison", "architecture_comparison_plot"
    comparison = quietly(
        lambda: Pipeline(
            [
                Node(compare_architectures, summaries, table, name="compare_architectures"),
                Node(
                    plot_architecture_comparison, table, plot, name="plot_architecture_comparison"
                ),
            ]
        )
    )
    return sum(trained, Pipeline([])) + comparison
