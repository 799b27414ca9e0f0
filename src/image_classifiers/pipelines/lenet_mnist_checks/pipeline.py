"""lenet_mnist_checks: lenet_mnist's MNIST data pipeline, then the data checks."""

from image_classifiers.pipelines.data_checks.pipeline import namespaced
from image_classifiers.pipelines.lenet_mnist.pipeline import DATA, NAMESPACE


def create_pipeline(**kwargs):
    """Label issues, duplicates and balance of the split lenet_mnist trains on."""
    return namespaced(NAMESPACE, DATA)
