"""cnn_cifar10: the over-fitting study of a VGG-style CNN on CIFAR-10, one command."""

from .pipeline import VARIANTS, create_pipeline, variant_namespace

__all__ = ["VARIANTS", "create_pipeline", "variant_namespace"]
