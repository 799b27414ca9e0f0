"""Export: a trained classifier -> SavedModel, ONNX and LiteRT files, each verified."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
