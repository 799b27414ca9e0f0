"""data_checks: the checks of the main job's data (and the checks pipeline of any namespace)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
