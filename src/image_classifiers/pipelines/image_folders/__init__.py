"""image_folders: any class-folder folder or zip -> a classifier -> evaluation."""

from .pipeline import create_pipeline, create_transfer_pipeline

__all__ = ["create_pipeline", "create_transfer_pipeline"]
