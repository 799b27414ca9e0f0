"""Transfer learning: a pretrained keras.applications base, feature extraction, fine-tuning."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
