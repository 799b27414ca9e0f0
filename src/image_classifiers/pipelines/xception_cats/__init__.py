"""The main job: raw archive -> decoded images -> mini-Xception -> transfer learning."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
