"""The cnn_cifar10 pipeline: the over-fitting study of a VGG-style CNN on CIFAR-10.

The CIFAR-10 data in namespace ``cnn_cifar10`` (parameters ``cifar10.*``), then one variant
of the model per namespace ``cnn_cifar10_<variant>`` (so one MLflow run each, parameters
``cnn_cifar10_<variant>.model_options``, ``.training`` ...), then a comparison table and
plot in ``data/08_reporting/cnn_cifar10/``, logged to the ``cnn_cifar10`` run.
"""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines.experiment import data_pipeline, model_pipeline, quietly

from .nodes import compare_variants, summarise_variant

NAMESPACE = "cnn_cifar10"
DATA = "cifar10"
#: The study: the baseline, then one remedy each (conf/base/parameters_cnn_cifar10.yml).
VARIANTS = ("baseline", "l2", "dropout", "batch_norm", "augmentation")


def variant_namespace(variant: str) -> str:
    """The namespace (and parameter group, model file, report folder, MLflow run) of a variant."""
    return f"{NAMESPACE}_{variant}"


def create_pipeline(**kwargs) -> Pipeline:
    """Data -> each variant trained, evaluated, inspected and summarised -> comparison.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    summary = Pipeline(
        [
            Node(
                summarise_variant,
                ["metrics", "training_history"],
                "study_summary",
                name="summarise_variant",
            )
        ]
    )
    variants = [
        model_pipeline(variant_namespace(variant), NAMESPACE)
        + Pipeline(summary, namespace=variant_namespace(variant))
        for variant in VARIANTS
    ]
    summaries = {variant: f"{variant_namespace(variant)}.study_summary" for variant in VARIANTS}
    comparison = quietly(
        lambda: Pipeline(
            [
                Node(
                    compare_variants,
                    summaries,
                    ["variant_comparison", "variant_comparison_plot"],
                    name="compare_variants",
                )
            ],
            namespace=NAMESPACE,
            inputs=set(summaries.values()),
        )
    )
    return data_pipeline(NAMESPACE, DATA) + sum(variants, Pipeline([])) + comparison
