"""A throw-away copy of the project for retraining runs: its conf/, a tiny model, tiny
decoded splits and an incoming folder. Imported by the tests of this folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import project_copies
from PIL import Image

PROJECT = project_copies.PROJECT
CLASSES = ("cat", "dog")
MODEL_NAME = "retrain_test"

# A convnet that separates dark "cats" from bright "dogs" in a few epochs on 32x32 images.
TINY_PARAMETERS = f"""
models:
  tiny: {{architecture: simple_convnet, filters: [4], dropout: 0.0}}
augmentation: {{horizontal_flip: false, rotation: 0.0, zoom: 0.0}}
training: {{epochs: 8, batch_size: 4, learning_rate: 0.003, seed: 7}}
evaluation: {{batch_size: 8, misclassified_grid: 2}}
retrain:
  model: tiny
  training: {{epochs: 8}}
  registered_model_name: {MODEL_NAME}
  min_score: 0.75
  min_improvement: 0.01
"""


def pixels(label: int, seed: int, size: int = 32) -> np.ndarray:
    """A dark (cat, 0) or bright (dog, 1) noisy picture."""
    rng = np.random.default_rng(seed)
    base = 60 if label == 0 else 190
    return np.clip(rng.normal(base, 30, (size, size, 3)), 0, 255).astype(np.uint8)


def jpeg(label: int, seed: int, size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(label, seed, size)).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_set(n: int, seed: int) -> dict[str, Any]:
    labels = (np.arange(n) % 2).astype(np.int32)
    images = np.stack([pixels(int(label), seed * 1000 + i) for i, label in enumerate(labels)])
    files = [f"{CLASSES[label]}.{seed}{i}.jpg" for i, label in enumerate(labels)]
    return {"images": images, "labels": labels, "classes": list(CLASSES), "files": files}


def make_project(root: Path, parameters: str = TINY_PARAMETERS) -> Path:
    """Copy the project's settings and conf/base into ``root``; add tiny splits and
    ``parameters`` (conf/local)."""
    splits = (("train", 16), ("validation", 8), ("test", 16))
    image_sets = {split: image_set(n, seed) for seed, (split, n) in enumerate(splits, 1)}
    return project_copies.make_project(root, parameters, image_sets)


def add_incoming(root: Path, count: int, seed: int, folder: str = "incoming") -> list[Path]:
    """``count`` new labeled JPEGs in ``data/01_raw/<folder>/<class>/``, half of each class."""
    paths = []
    for i in range(count):
        label = i % 2
        path = root / "data" / "01_raw" / folder / CLASSES[label] / f"new-{seed}-{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(label, seed * 1000 + i))
        paths.append(path)
    return paths


def incoming_files(root: Path) -> list[str]:
    folder = root / "data" / "01_raw" / "incoming"
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def run_retrain(project: Path, params: dict[str, Any] | None = None) -> None:
    """``kedro run --pipelines=retrain`` in ``project`` (which must be the working directory)."""
    project_copies.run_pipeline(project, "retrain", params)
