"""The ML core (image_classifiers.core) imports neither Kedro nor MLflow: a notebook or a
script can use it alone (docs/architecture.md)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import image_classifiers.core


def test_the_core_imports_neither_kedro_nor_mlflow():
    modules = [
        info.name
        for info in pkgutil.walk_packages(
            image_classifiers.core.__path__, "image_classifiers.core."
        )
    ]
    assert {"image_classifiers.core.training", "image_classifiers.core.data.split"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "found = sorted({m.split('.')[0] for m in sys.modules} & {'kedro', 'kedro_datasets',"
        " 'kedro_mlflow', 'mlflow'})\n"
        "assert not found, found\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # no TensorFlow start-up needed
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
