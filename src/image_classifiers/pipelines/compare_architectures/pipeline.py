"""The compare_architectures pipeline: model_training once per model, then a comparison.

Each of ``MODELS`` trains in a namespace of its name (same datasets, files and registered
model as ``--pipelines=model_training``), its own part in ``kedro viz`` and its own MLflow
run nested in the pipeline's (``hooks.ModelRunsHook``). The comparison reads every model's
summary, so it runs last; it logs to the pipeline's run. Kedro fixes a DAG when it
registers it, hence a list in code (as ``cnn_cifar10``'s variants); ``--namespaces`` trains
some of them only, without the comparison.
"""

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
