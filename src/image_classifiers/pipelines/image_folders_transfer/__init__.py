"""The image_folders pipeline with an ImageNet base instead of a from-scratch model."""

from image_classifiers.pipelines.image_folders.pipeline import (
    create_transfer_pipeline as create_pipeline,
)

__all__ = ["create_pipeline"]
