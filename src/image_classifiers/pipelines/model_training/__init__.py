"""Build -> train -> evaluate one from-scratch image classifier (namespaced per model)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
