"""The cnn_fashion_mnist pipeline: data, model, reports and MLflow run in its own namespace."""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines.experiment import experiment

NAMESPACE = "cnn_fashion_mnist"
DATA = "fashion_mnist"


def create_pipeline(**kwargs) -> Pipeline:
    """The dataset's data pipeline, then the model, both in namespace ``NAMESPACE``.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    return experiment(NAMESPACE, DATA)
