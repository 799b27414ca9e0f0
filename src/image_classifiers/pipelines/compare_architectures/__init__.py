"""Train several architectures side by side (one namespace and MLflow run each), then compare."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
