"""On JAX, training compiles each step once: a recompile costs tens of seconds on a GPU (see
../shared/GPU.md), more than the whole 100-epoch budget allows. Runs ``fit_model`` in a child
process (Keras picks its backend at import) with JAX's compile log switched on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_env import backend_env

# Runs in the child process (the start of each script): JAX logs what it compiles.
PRELUDE = """
import json, logging
import numpy as np
import jax

jax.config.update("jax_log_compiles", True)
compiled = []


class CompileLog(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        # Keras' ModelCheckpoint compares val_loss with the best through keras.ops.less: a
        # scalar op JAX compiles once, whenever it first runs; it is not a step.
        if message.startswith("Compiling ") and message.split()[1] != "jit(less)":
            compiled.append(message.split()[1])  # e.g. jit(train_step)


logging.getLogger("jax").addHandler(CompileLog())

import keras
from image_classifiers.core import training
from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import TrainingParams
"""
# Prints one JSON line.
SCRIPT = (
    PRELUDE
    + """
after_epoch = []


class CountCompiles(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):  # after the epoch's validation
        after_epoch.append(len(compiled))


rng = np.random.default_rng(0)


def image_set(n):
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return {"images": images, "labels": np.arange(n) % 2, "classes": ["cat", "dog"]}


# Sizes that batches of 8 don't divide: a partial batch would be a second shape to compile.
train_set, validation_set, test_set = image_set(20), image_set(11), image_set(13)
options = TrainingParams(epochs=3, batch_size=8, schedule="cosine", seed=1)
augmentation = {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.2, "translation": 0.1}
with training.model_build_scope(options):
    model = build_classifier("mini_xception", (32, 32, 3), 2, augmentation=augmentation)
model, history = training.fit_model(
    model, train_set, validation_set, options, callbacks=[CountCompiles()]
)
before_test = len(compiled)
training.predict_probabilities(model, test_set["images"], batch_size=8)
print(json.dumps({
    "backend": jax.default_backend(),
    "after_epoch": after_epoch,
    "for_test": compiled[before_test:],
    "steps": [name for name in compiled if name.endswith("_step)")],
}))
"""
)


def run_child(script: str) -> Any:
    """Run ``script`` on JAX in a child process; the JSON of its last line."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        # Compiles quickly: the number of compilations is what is checked, not their speed.
        env=backend_env("jax"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_training_and_evaluation_compile_each_step_once():
    found = run_child(SCRIPT)
    # One training step and one inference step (validation and test share it)...
    assert sorted(found["steps"]) == ["jit(predict_step)", "jit(train_step)"], found
    # ... all compiled during the first epoch: later epochs and the test set compile nothing.
    first, *later = found["after_epoch"]
    assert len(later) == 2 and all(count == first for count in later), found
    assert found["for_test"] == [], found


# Every recipe option on (issue #21): MixUp, CutMix, EMA, random erasing, label smoothing.
RECIPE_SCRIPT = (
    PRELUDE
    + """
rng = np.random.default_rng(0)


def image_set(n):
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return {"images": images, "labels": np.arange(n) % 3, "classes": ["a", "b", "c"]}


options = TrainingParams(
    epochs=2, batch_size=8, seed=1, optimizer="adamw", label_smoothing=0.1,
    mixup_alpha=0.2, cutmix_alpha=1.0, ema=True,
)
augmentation = {"horizontal_flip": True, "rotation": 0.1, "erasing": 0.5}
with training.model_build_scope(options):
    model = build_classifier("residual_convnet", (32, 32, 3), 3, augmentation=augmentation)
training.fit_model(model, image_set(24), image_set(9), options)
print(json.dumps([name for name in compiled if name.endswith("_step)")]))
"""
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_every_option_on_keeps_one_compiled_training_step():
    steps = run_child(RECIPE_SCRIPT)
    assert sorted(steps) == ["jit(predict_step)", "jit(train_step)"], steps
