"""lenet_mnist: LeNet on MNIST; data, model, reports and MLflow run in namespace lenet_mnist."""

from image_classifiers.pipelines.experiment import experiment

NAMESPACE, DATA = "lenet_mnist", "mnist"


def create_pipeline(**kwargs):
    """The MNIST data pipeline, then the model (conf/base/parameters_lenet_mnist.yml)."""
    return experiment(NAMESPACE, DATA)
