"""Data pipeline: download the archive, extract it, split it, decode it once."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
