"""tune: an Optuna study over a training pipeline's parameters, trials nested in MLflow."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
