"""cnn_fashion_mnist: a small CNN on Fashion-MNIST, all in namespace cnn_fashion_mnist."""

from image_classifiers.pipelines.experiment import experiment

NAMESPACE, DATA = "cnn_fashion_mnist", "fashion_mnist"


def create_pipeline(**kwargs):
    """The Fashion-MNIST data pipeline, then the model (parameters_cnn_fashion_mnist.yml)."""
    return experiment(NAMESPACE, DATA)
