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
    run_after: Sequence[str] = (), namespace: str = NAMESPACE, **kwargs
) -> Pipeline:
    """Create the pipeline; datasets and nodes live under ``namespace`` (``transfer``).

    Both phases are evaluated by the shared evaluation pipeline: ``<namespace>.
    feature_extraction_metrics`` ... after phase 1 (its ``evaluate_model`` only, in the
    sub-namespace ``feature_extraction``), ``<namespace>.metrics`` and every figure after
    phase 2.

    Args:
        run_after: Datasets (outside the namespace) that must exist before the stage starts;
            its first node takes and ignores them (Kedro orders nodes by data only):
            ``xception_cats`` runs it after the from-scratch model.
        namespace: Where its datasets and nodes live; an experiment pipeline gives its own
            (``vgg16_cifar10``) and maps the shared inputs and parameters into it.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    phase_1 = Pipeline(
        [
            Node(
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
            Node(
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
        ]
    )
    phase_1_evaluation = Pipeline(
        evaluation_pipeline().only_nodes("evaluate_model"),
        namespace="feature_extraction",
        inputs={"model": "feature_extraction_model", "test_set": "test_set"},
        outputs={name: f"feature_extraction_{name}" for name in PHASE_1_REPORTS},
        parameters={"params:evaluation"},
    )
    phase_2 = Pipeline(
        [
            Node(
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
            )
        ]
    )
    return Pipeline(
        phase_1 + phase_1_evaluation + phase_2 + evaluation_pipeline(plot_transfer_curves),
        namespace=namespace,
        inputs={"train_set", "validation_set", "test_set", *run_after},
        parameters={f"params:{name}" for name in SHARED_PARAMETERS},
    )
