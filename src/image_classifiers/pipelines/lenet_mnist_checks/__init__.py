"""lenet_mnist_checks: the checks of lenet_mnist's data (data/08_reporting/lenet_mnist/)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
