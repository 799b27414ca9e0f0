"""cnn_cifar10, the over-fitting study of a VGG-style CNN: CIFAR-10 in namespace
``cnn_cifar10``, each variant in ``cnn_cifar10_<variant>`` (its own parameters and MLflow
run), then a comparison in ``data/08_reporting/cnn_cifar10/``, logged to the data's run."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines.experiment import data_pipeline, model_pipeline, quietly

from .nodes import compare_variants, summarise_variant

NAMESPACE, DATA = "cnn_cifar10", "cifar10"
#: The study: the baseline, then one remedy each (conf/base/parameters_cnn_cifar10.yml).
VARIANTS = ("baseline", "l2", "dropout", "batch_norm", "augmentation")


def variant_namespace(variant: str) -> str:
    """The namespace (parameter group, model file, report folder, MLflow run) of a variant."""
    return f"{NAMESPACE}_{variant}"


def create_pipeline(**kwargs) -> Pipeline:
    """Data -> each variant trained, evaluated, inspected and summarised -> comparison."""
    inputs = ["metrics", "training_history"]
    summary = Node(summarise_variant, inputs, "study_summary", name="summarise_variant")
    variants = [
        model_pipeline(variant_namespace(v), NAMESPACE)
        + Pipeline([summary], namespace=variant_namespace(v))
        for v in VARIANTS
    ]
    summaries = {v: f"{variant_namespace(v)}.study_summary" for v in VARIANTS}
    outputs = ["variant_comparison", "variant_comparison_plot"]
    comparison = quietly(
        lambda: Pipeline(
            [Node(compare_variants, summaries, outputs, name="compare_variants")],
            namespace=NAMESPACE,
            inputs=set(summaries.values()),
        )
    )
    return data_pipeline(NAMESPACE, DATA) + sum(variants, Pipeline([])) + comparison
