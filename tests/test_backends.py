"""The models, the augmentation and the auxiliary heads on every Keras backend: build, a few
training steps (XLA-compiled on JAX), save and load. Each backend runs in its own process,
since Keras picks its backend at import."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from backend_env import backend_env

# Runs in the child process; prints one JSON line of findings.
SCRIPT = """
import json, os, sys
import numpy as np
import keras
from keras.src.trainers.trainer import model_supports_jit
from image_classifiers.core.models import AuxiliaryHeadsModel, build_classifier

backend = keras.backend.backend()
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (8, 16, 16, 3)).astype("float32")
labels = rng.integers(0, 2, 8)
augmentation = {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.2, "translation": 0.1,
                "contrast": 0.1, "brightness": 0.1, "seed": 0}
# "auto" compiles the step with XLA on JAX (and on TensorFlow with a GPU: TensorFlow keeps XLA
# off on CPU-only machines); PyTorch runs eagerly under "auto".
model = build_classifier("residual_convnet", (16, 16, 3), 2, augmentation=augmentation,
                         filters=(4, 8))
model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)

scaled = images / 255
augment = model.get_layer("augment")
path = os.path.join(sys.argv[1], "model.keras")
model.save(path)
loaded = keras.saving.load_model(path)

# The training-only auxiliary heads (GoogLeNet's) on a two-head toy network.
inputs = keras.Input((16, 16, 3))
features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
heads = [keras.layers.Dense(1, activation="sigmoid")(features) for _ in range(2)]
auxiliary = AuxiliaryHeadsModel(keras.Model(inputs, heads))
auxiliary.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
auxiliary_history = auxiliary.fit(scaled, labels, batch_size=4, epochs=1, verbose=0)

print(json.dumps({
    "backend": backend,
    "supports_jit": model_supports_jit(model),
    "jit_compile": bool(model.jit_compile),
    "losses": [history.history["loss"][0], auxiliary_history.history["loss"][0]],
    "identity_at_inference": bool(np.array_equal(
        keras.ops.convert_to_numpy(augment(scaled)), scaled)),
    "changes_in_training": not np.allclose(
        keras.ops.convert_to_numpy(augment(scaled, training=True)), scaled),
    "reload_max_difference": float(np.abs(
        keras.ops.convert_to_numpy(loaded(images)) - keras.ops.convert_to_numpy(model(images))
    ).max()),
}))
"""

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_build_augment_fit_save_load(backend: str, tmp_path: Path):
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"{BACKENDS[backend]} is not installed")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=backend_env(backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    findings = json.loads(result.stdout.strip().splitlines()[-1])

    assert findings["backend"] == backend
    assert findings["supports_jit"]
    if backend != "tensorflow":  # TensorFlow's "auto" depends on whether a GPU is present
        assert findings["jit_compile"] == (backend == "jax")
    assert all(math.isfinite(loss) for loss in findings["losses"])
    assert findings["identity_at_inference"]
    assert findings["changes_in_training"]
    assert findings["reload_max_difference"] < 1e-5
