"""Scheduled retraining: new labeled images -> challenger -> promoted only if better."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
