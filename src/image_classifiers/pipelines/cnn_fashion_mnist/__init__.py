"""cnn_fashion_mnist: a small CNN on Fashion-MNIST, all in namespace cnn_fashion_mnist."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
