"""lr_find: the LR range test on the model and training split of ``lr_find.target``."""

from .pipeline import LrFindTargetHook, create_pipeline

__all__ = ["LrFindTargetHook", "create_pipeline"]
