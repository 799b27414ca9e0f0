"""cnn_fashion_mnist: a small CNN on Fashion-MNIST, one command."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
