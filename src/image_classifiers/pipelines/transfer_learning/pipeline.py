"""The transfer_learning pipeline: build -> feature extraction -> fine-tuning -> evaluate."""

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node

from image_classifiers.pipelines.model_training.inspection import inspect_model
from image_classifiers.pipelines.model_training.nodes import evaluate_model

from .nodes import (
    build_transfer_model,
    fine_tune_model,
    plot_transfer_curves,
    train_feature_extractor,
)

NAMESPACE = "transfer"
SHARED_PARAMETERS = ("transfer", "training", "augmentation", "evaluation", "inspection")


def create_pipeline(
    run_after: Sequence[str] = (), namespace: str = NAMESPACE, **kwargs
) -> Pipeline:
    """Create the pipeline; datasets and nodes live under ``namespace`` (``transfer``).

    Both phases' models are saved and evaluated with the same node as the from-scratch
    models: ``transfer.feature_extraction_model`` / ``..._metrics`` after phase 1,
    ``transfer.model`` / ``transfer.metrics`` after phase 2. The file names carry the base
    (data/06_models/transfer_<base>.keras, see conf/base/catalog_transfer_learning.yml).

    Args:
        run_after: Datasets (outside the namespace) that must exist before the transfer
            stage starts; its first node takes and ignores them. Kedro orders nodes only by
            their data, so this is how ``xception_cats`` runs the stage after the
            from-scratch model.
        namespace: Where its datasets and nodes live; an experiment pipeline gives its own
            (``vgg16_cifar10``) and maps the shared inputs and parameters into it.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).

    Returns:
        The namespaced pipeline.
    """
    template = Pipeline(
        [
            node(
                build_transfer_model,
                [
                    "train_set",
                    "params:transfer",
                    "params:augmentation",
                    "params:training",
                    *run_after,
                ],
                "untrained_model",
                name="build_transfer_model",
            ),
            node(
                train_feature_extractor,
                [
                    "untrained_model",
                    "train_set",
                    "validation_set",
                    "params:training",
                    "params:transfer",
                ],
                ["feature_extraction_model", "feature_extraction_history"],
                name="train_feature_extractor",
            ),
            node(
                evaluate_model,
                ["feature_extraction_model", "test_set", "params:evaluation"],
                [
                    "feature_extraction_metrics",
                    "feature_extraction_confusion_matrix_plot",
                    "feature_extraction_misclassified_plot",
                ],
                name="evaluate_feature_extractor",
            ),
            node(
                fine_tune_model,
                [
                    "feature_extraction_model",
                    "train_set",
                    "validation_set",
                    "params:training",
                    "params:transfer",
                    "feature_extraction_history",
                ],
                ["model", "training_history"],
                name="fine_tune_model",
            ),
            node(
                evaluate_model,
                ["model", "test_set", "params:evaluation"],
                ["metrics", "confusion_matrix_plot", "misclassified_plot"],
                name="evaluate_model",
            ),
            node(
                inspect_model,
                ["model", "test_set", "params:inspection", "params:evaluation"],
                ["feature_maps_plot", "grad_cam_plot"],
                name="inspect_model",
            ),
            node(
                plot_transfer_curves,
                "training_history",
                "training_curves_plot",
                name="plot_training_curves",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=namespace,
        inputs={"train_set", "validation_set", "test_set", *run_after},
        parameters={f"params:{name}" for name in SHARED_PARAMETERS},
    )
