"""image_folders: a user's class folders (or zip) -> a trained, evaluated classifier, all in"""

from .pipeline import create_pipeline, create_transfer_pipeline

__all__ = ["create_pipeline", "create_transfer_pipeline"]
