"""lenet_mnist: LeNet on MNIST, one command (conf/base/parameters_lenet_mnist.yml)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
