"""xception_cats, the main job: raw archive -> decoded images -> mini-Xception -> transfer"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
