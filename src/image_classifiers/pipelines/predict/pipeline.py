"""The predict pipeline: load a model (registry or .keras) -> classify a folder or zip."""

from kedro.pipeline import Node, Pipeline

from .nodes import load_prediction_model, predict_images, summarize_predictions


def create_pipeline(**kwargs) -> Pipeline:
    """Load the model -> predict every image -> summary of labels and unreadable files."""
    return Pipeline(
        [
            Node(
                load_prediction_model,
                "params:predict",
                "prediction_model",
                name="load_prediction_model",
            ),
            Node(
                predict_images,
                ["prediction_model", "params:predict"],
                "predictions",
                name="predict_images",
            ),
            Node(
                summarize_predictions,
                "predictions",
                "predictions_summary",
                name="summarize_predictions",
            ),
        ]
    )
