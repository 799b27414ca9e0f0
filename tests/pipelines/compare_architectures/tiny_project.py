"""A throw-away copy of the project (its conf/, tiny models, tiny decoded splits) to run
tracked pipelines in. Imported by the tests of this folder (pytest puts it on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import project_copies

PROJECT = project_copies.PROJECT
TINY_MODELS = ("simple_convnet", "residual_convnet", "mini_xception")  # the pipeline's MODELS
EPOCHS = 2

# The compared models made small enough to train in a second or two on 32x32 images (conf/local
# overrides single keys of conf/base: the soft merge of settings.py).
TINY_PARAMETERS = f"""
models:
  simple_convnet: {{filters: [4, 8], dropout: 0.0}}
  residual_convnet: {{filters: [4, 8]}}
  mini_xception: {{filters: [4, 8], stem_filters: 4, dropout: 0.0}}
augmentation: {{rotation: 0.0, zoom: 0.0}}
training: {{epochs: {EPOCHS}, batch_size: 8}}
evaluation: {{batch_size: 8, misclassified_grid: 4}}
"""


def image_set(n: int, seed: int, size: int = 32) -> dict[str, Any]:
    """``n`` images, alternately dark ("cat") and bright ("dog")."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    base = np.where(labels == 0, 60, 190)[:, None, None, None]
    images = np.clip(rng.normal(base, 30, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return {
        "images": images,
        "labels": labels,
        "classes": ["cat", "dog"],
        "files": [f"{seed}-{i}.jpg" for i in range(n)],
    }


def make_project(root: Path) -> Path:
    """Copy the project's settings and conf/base into ``root``; add tiny models and splits."""
    splits = (("train", 16), ("validation", 8), ("test", 8))
    image_sets = {split: image_set(n, seed) for seed, (split, n) in enumerate(splits)}
    return project_copies.make_project(root, TINY_PARAMETERS, image_sets)


end_active_runs = project_copies.end_active_runs
run_pipeline = project_copies.run_pipeline
