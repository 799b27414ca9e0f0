"""The model_training pipeline: build -> train -> evaluate one classifier per namespace."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.model_logging import mlflow_records

from .inspection import inspect_model
from .nodes import (
    build_model,
    calibrate_model,
    evaluate_model,
    plot_training_curves,
    train_model,
    write_model_card,
)

SHARED_PARAMETERS = ("training", "augmentation", "evaluation", "inspection")
# The model trained by `kedro run --pipelines=model_training` (and xception_cats).
DEFAULT_MODEL = "mini_xception"


def evaluation_pipeline() -> Pipeline:
    """What every trained ``model`` gets: a temperature fitted on the validation split, test
    metrics and figures, top losses, inspection, curves, a model card; shared by
    model_training, transfer_learning (both phases) and the experiments."""
    model = ["model", "test_set"]
    reports = [
        "metrics",
        "confusion_matrix_plot",
        "misclassified_plot",
        "reliability_plot",
        "top_losses",
    ]
    figures = ["feature_maps_plot", "grad_cam_plot"]
    splits = ["train_set", "validation_set", "test_set"]
    card = ["model", "metrics", "calibration", "top_losses", "training_history", *splits]
    return Pipeline(
        [
            Node(
                calibrate_model,
                ["model", "validation_set", "params:evaluation"],
                "calibration",
                name="calibrate_model",
            ),
            Node(
                evaluate_model,
                [*model, "params:evaluation", "calibration"],
                reports,
                name="evaluate_model",
            ),
            # The model's MLflow run: the model (Keras flavor, registered), metrics, summary.
            Node(
                mlflow_records,
                ["model", "metrics"],
                ["mlflow_model", "mlflow_metrics", "model_summary"],
                name="log_to_mlflow",
            ),
            # After log_to_mlflow (its model_summary goes in the card): the hook copies the card
            # to the registered version's description, so that version must exist by then.
            Node(
                write_model_card,
                {
                    **{name: name for name in card},
                    "training": "params:training",
                    "model_summary": "model_summary",
                },
                "model_card",
                name="write_model_card",
            ),
            Node(
                inspect_model,
                [*model, "params:inspection", "params:evaluation"],
                figures,
                name="inspect_model",
            ),
            Node(
                plot_training_curves,
                "training_history",
                "training_curves_plot",
                name="plot_training_curves",
            ),
        ]
    )


def create_pipeline(model_name: str = DEFAULT_MODEL, **kwargs) -> Pipeline:
    """The model ``models.<model_name>`` in namespace ``model_name`` (``mini_xception.model``
    -> data/06_models/mini_xception.keras), so models train side by side on shared data."""
    splits = ["train_set", "validation_set"]
    options = ["params:model_options", "params:augmentation", "params:training"]
    nodes = [
        Node(build_model, ["train_set", *options], "untrained_model", name="build_model"),
        Node(
            train_model,
            ["untrained_model", *splits, "params:training"],
            ["model", "training_history"],
            name="train_model",
        ),
        evaluation_pipeline(),
    ]
    shared = {f"params:{name}": f"params:{name}" for name in SHARED_PARAMETERS}
    return Pipeline(
        nodes,
        namespace=model_name,
        inputs={*splits, "test_set"},
        parameters={"params:model_options": f"params:models.{model_name}", **shared},
    )
