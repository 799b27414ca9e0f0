"""Build -> train -> evaluate one from-scratch image classifier (namespaced per model)."""

from .pipeline import DEFAULT_MODEL, create_pipeline

__all__ = ["DEFAULT_MODEL", "create_pipeline"]
