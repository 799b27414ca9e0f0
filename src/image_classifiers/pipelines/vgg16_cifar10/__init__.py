"""vgg16_cifar10: VGG16 pretrained on ImageNet, on CIFAR-10 at 32x32, one command."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
