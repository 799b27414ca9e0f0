"""The predict pipeline: a model (registry or .keras) classifies a folder or zip of images."""

from kedro.pipeline import Node, Pipeline

from .nodes import predict_images, summarize_predictions


def create_pipeline(**kwargs) -> Pipeline:
    """Predict every image -> summary of labels and unreadable files."""
    return Pipeline(
        [
            Node(predict_images, "params:predict", "predictions", name="predict_images"),
            Node(
                summarize_predictions,
                "predictions",
                "predictions_summary",
                name="summarize_predictions",
            ),
        ]
    )
