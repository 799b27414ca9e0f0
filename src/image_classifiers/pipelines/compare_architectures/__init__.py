"""Train several architectures side by side (one MLflow run each), then compare them."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
