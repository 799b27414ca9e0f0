"""Batch prediction: a folder or zip of images -> data/07_model_output/predictions.csv."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
