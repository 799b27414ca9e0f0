"""The transfer_learning pipeline: build -> feature extraction -> fine-tuning -> evaluate."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines.model_training.pipeline import evaluation_pipeline
from image_classifiers.tracking import metric_history

from . import nodes

NAMESPACE = "transfer"
SHARED_PARAMETERS = ("transfer", "training", "augmentation", "evaluation", "inspection")
# Phase 1 is reported under names of its own (catalog_transfer_learning.yml).
PHASE_1_REPORTS = (
    "metrics",
    "confusion_matrix_plot",
    "misclassified_plot",
    "reliability_plot",
    "top_losses",
    "calibration",
)


def create_pipeline(namespace: str = NAMESPACE, **kwargs):
    """The pipeline in ``namespace`` (an experiment gives its own, e.g. ``vgg16_cifar10``).

    The shared evaluation pipeline evaluates phase 1 (``calibrate_model`` and
    ``evaluate_model``, in the sub-namespace ``feature_extraction``) and phase 2.
    """
    splits = ["train_set", "validation_set"]
    phase = ["params:training", "params:transfer"]
    build = ["train_set", "params:transfer", "params:augmentation", "params:training"]
    phase_1_evaluation = Pipeline(
        evaluation_pipeline().only_nodes("calibrate_model", "evaluate_model"),
        namespace="feature_extraction",
        inputs={
            "model": "feature_extraction_model",
            "validation_set": "validation_set",
            "test_set": "test_set",
        },
        outputs={name: f"feature_extraction_{name}" for name in PHASE_1_REPORTS},
        parameters={"params:evaluation"},
    )
    steps = [
        Node(nodes.build_transfer_model, build, "untrained_model", name="build_transfer_model"),
        Node(
            nodes.train_feature_extractor,
            ["untrained_model", *splits, *phase],
            ["feature_extraction_model", "feature_extraction_history"],
            name="train_feature_extractor",
        ),
        phase_1_evaluation,
        Node(
            metric_history,
            "feature_extraction_metrics",
            "feature_extraction_mlflow_metrics",
            name="log_feature_extraction_metrics",
        ),
        Node(
            nodes.fine_tune_model,
            ["feature_extraction_model", *splits, *phase, "feature_extraction_history"],
            ["model", "training_history"],
            name="fine_tune_model",
        ),
        evaluation_pipeline(),
    ]
    return Pipeline(
        steps,
        namespace=namespace,
        inputs={*splits, "test_set"},
        parameters={f"params:{name}" for name in SHARED_PARAMETERS},
    )
