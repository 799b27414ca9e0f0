"""The compare_architectures pipeline: model_training once per model, then a comparison."""

from .pipeline import MODELS, create_pipeline

__all__ = ["MODELS", "create_pipeline"]
