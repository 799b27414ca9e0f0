"""A throw-away copy of the project (its conf/, tiny models, tiny decoded splits) to run
tracked pipelines in. Imported by the tests of this folder (pytest puts it on sys.path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from image_classifiers.datasets import ImageSetDataset

PROJECT = Path(__file__).resolve().parents[3]
TINY_MODELS = ("tiny_a", "tiny_b")
EPOCHS = 2

# Two small convnets that train in a second or two on 32x32 images.
TINY_PARAMETERS = f"""
models:
  tiny_a: {{architecture: simple_convnet, filters: [4, 8], dropout: 0.0}}
  tiny_b: {{architecture: simple_convnet, filters: [8], dropout: 0.0}}
compare_architectures:
  models: [{", ".join(TINY_MODELS)}]
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
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    (root / "conf" / "local" / "parameters_tiny.yml").write_text(TINY_PARAMETERS)
    (root / "src").mkdir()  # the package itself is installed; Kedro wants the folder
    for seed, (split, n) in enumerate((("train", 16), ("validation", 8), ("test", 8))):
        ImageSetDataset(str(root / "data" / "05_model_input" / split)).save(image_set(n, seed))
    return root


def end_active_runs() -> None:
    """Close runs a failed or interrupted test may have left open in this process."""
    while mlflow.active_run():
        mlflow.end_run()


def run_pipeline(project: Path, pipeline: str, runtime_params: dict | None = None) -> None:
    """``kedro run --pipeline=<pipeline>`` in ``project`` (must be the working directory)."""
    end_active_runs()
    # Re-registers the pipelines, so compare_architectures reads this project's model list.
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
            session.run(pipeline_names=[pipeline])
    finally:
        bootstrap_project(PROJECT)  # later tests see the real project's pipelines
