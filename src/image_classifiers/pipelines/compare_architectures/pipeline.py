"""The compare_architectures pipeline: the model_training pipeline once per model, then a
comparison of them all.

Each model of ``MODELS`` is trained, evaluated and inspected in its own namespace (as
``kedro run --pipelines=model_training`` trains ``mini_xception``: same datasets, files and
registered model), so ``kedro viz`` shows each as its own part and
``hooks.ModelRunsHook`` gives each its own MLflow run nested in the pipeline's. The
comparison reads every model's summary, so Kedro runs it after them all; it logs to the
pipeline's run. Kedro fixes a DAG when it registers it, hence a list in code, as
``cnn_cifar10``'s variants; ``--namespaces`` trains some of them only (without the comparison).
"""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines import model_training
from image_classifiers.pipelines.experiment import quietly

from .nodes import compare_architectures, plot_architecture_comparison, summarise_training

#: The models compared, keys of the ``models`` parameters (conf/base/parameters_model_training.yml).
MODELS = ("simple_convnet", "residual_convnet", "mini_xception")


def create_pipeline(models: tuple[str, ...] = MODELS, **kwargs) -> Pipeline:
    """Train, evaluate and summarise each of ``models``, then compare them.

    Args:
        models: Keys of the ``models`` parameters, each trained in a namespace of its name.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    summary = Pipeline(
        [
            Node(
                summarise_training,
                ["model", "metrics", "training_history", "params:model_options"],
                ["architecture_summary", "train_seconds"],
                name="summarise_training",
            )
        ]
    )
    trained = [
        model_training.create_pipeline(model)
        + Pipeline(
            summary, namespace=model, parameters={"params:model_options": f"params:models.{model}"}
        )
        for model in models
    ]
    summaries = {model: f"{model}.architecture_summary" for model in models}
    comparison = quietly(
        lambda: Pipeline(
            [
                Node(
                    compare_architectures,
                    summaries,
                    "architecture_comparison",
                    name="compare_architectures",
                ),
                Node(
                    plot_architecture_comparison,
                    "architecture_comparison",
                    "architecture_comparison_plot",
                    name="plot_architecture_comparison",
                ),
            ]
        )
    )
    return sum(trained, Pipeline([])) + comparison
