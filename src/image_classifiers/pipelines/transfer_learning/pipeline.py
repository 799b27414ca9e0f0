"""The transfer_learning pipeline: build -> feature extraction -> fine-tuning -> evaluate."""

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines.model_training.pipeline import evaluation_pipeline

from .nodes import (
    build_transfer_model,
    fine_tune_model,
    plot_transfer_curves,
    train_feature_extractor,
)

NAMESPACE = "transfer"
SHARED_PARAMETERS = ("transfer", "training", "augmentation", "evaluation", "inspection")
PHASE_1_REPORTS = ("metrics", "confusion_matrix_plot", "misclassified_plot")


def create_pipeline(
    namespace: str = NAMESPACE, run_after: Sequence[str] = (), **kwargs
) -> Pipeline:
    """The pipeline in ``namespace`` (an experiment gives its own, e.g. ``vgg16_cifar10``).

    The shared evaluation pipeline evaluates phase 1 (its ``evaluate_model`` alone, in the
    sub-namespace ``feature_extraction``: ``feature_extraction_metrics`` ...) and phase 2.

    Args:
        namespace: Where its datasets and nodes live.
        run_after: Datasets (outside the namespace) that must exist before the stage starts;
            its first node takes and ignores them (Kedro orders nodes by data only):
            ``xception_cats`` runs it after the from-scratch model.
    """
    splits = ["train_set", "validation_set"]
    phase = ["params:training", "params:transfer"]
    build = ["train_set", "params:transfer", "params:augmentation", "params:training"]
    phase_1_evaluation = Pipeline(
        evaluation_pipeline().only_nodes("evaluate_model"),
        namespace="feature_extraction",
        inputs={"model": "feature_extraction_model", "test_set": "test_set"},
        outputs={name: f"feature_extraction_{name}" for name in PHASE_1_REPORTS},
        parameters={"params:evaluation"},
    )
    nodes = [
        Node(
            build_transfer_model,
            [*build, *run_after],
            "untrained_model",
            name="build_transfer_model",
        ),
        Node(
            train_feature_extractor,
            ["untrained_model", *splits, *phase],
            ["feature_extraction_model", "feature_extraction_history"],
            name="train_feature_extractor",
        ),
        phase_1_evaluation,
        Node(
            fine_tune_model,
            ["feature_extraction_model", *splits, *phase, "feature_extraction_history"],
            ["model", "training_history"],
            name="fine_tune_model",
        ),
        evaluation_pipeline(plot_transfer_curves),
    ]
    return Pipeline(
        nodes,
        namespace=namespace,
        inputs={*splits, "test_set", *run_after},
        parameters={f"params:{name}" for name in SHARED_PARAMETERS},
    )
