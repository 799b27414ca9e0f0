"""cnn_cifar10, the over-fitting study of a VGG-style CNN: CIFAR-10 in namespace"""

from .pipeline import VARIANTS, create_pipeline, variant_namespace

__all__ = ["VARIANTS", "create_pipeline", "variant_namespace"]
