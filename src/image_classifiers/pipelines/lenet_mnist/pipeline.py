"""The lenet_mnist pipeline: data, model, reports and MLflow run in namespace lenet_mnist."""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines.experiment import experiment

NAMESPACE = "lenet_mnist"
DATA = "mnist"


def create_pipeline(**kwargs) -> Pipeline:
    """The dataset's data pipeline, then the model, both in namespace ``NAMESPACE``.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    return experiment(NAMESPACE, DATA)
