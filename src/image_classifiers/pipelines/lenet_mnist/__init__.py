"""lenet_mnist: LeNet on MNIST; data, model, reports and MLflow run in namespace lenet_mnist."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
