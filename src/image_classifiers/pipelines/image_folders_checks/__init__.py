"""image_folders_checks: the checks of image_folders's data (data/08_reporting/image_folders/)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
