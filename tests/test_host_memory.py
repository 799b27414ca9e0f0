"""TensorFlow's from_generator malloc setting, and the callback that undoes it in training.

The probe counts the page faults of malloc/touch/free cycles of 8 MiB: under TensorFlow's
128 KiB threshold each cycle maps fresh pages (2,048 faults), with glibc's adapted
thresholds the freed block is reused (next to none).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest
from backend_env import backend_env

from image_classifiers.core import host_memory

SCRIPT = textwrap.dedent(
    """
    import ctypes, json, resource, sys
    import keras, numpy as np
    from image_classifiers.core.params import TrainingParams
    from image_classifiers.core.training import ImageBatches, fit_model, predict_probabilities

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def faults(size=8 << 20, cycles=20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(cycles):
            block = libc.malloc(size)
            ctypes.memset(block, 1, size)
            libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(16) % 2
    split = {"images": images, "labels": labels, "classes": ["cat", "dog"]}
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    result = {"before": faults()}
    if sys.argv[1] == "fit":
        # Plain Keras first: TensorFlow sets its threshold when the generator starts.
        batches = ImageBatches(images, labels.astype("float32").reshape(-1, 1), 4, shuffle=True)
        model.fit(batches, epochs=1, verbose=0)
        result["tensorflow"] = faults()
        fit_model(model, split, split, TrainingParams(epochs=1, batch_size=4))
    else:
        model.predict(ImageBatches(images, None, 4), verbose=0)
        result["tensorflow"] = faults()
        predict_probabilities(model, images, batch_size=4)
    result["restored"] = faults()
    print(json.dumps(result))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
@pytest.mark.parametrize("call", ["fit", "predict"])
def test_training_and_inference_undo_tensorflows_malloc_threshold(call):
    pytest.importorskip("tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, call],
        check=False,
        env=backend_env("tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    faults = json.loads(result.stdout.strip().splitlines()[-1])
    # TensorFlow's setting makes every cycle fault its pages in (20 x 2,048 for 8 MiB).
    assert faults["tensorflow"] > 20_000, faults
    assert faults["restored"] < faults["tensorflow"] / 20, faults


def test_callback_does_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.restore_malloc_thresholds() is False
    callback = host_memory.RestoreMallocThresholds()
    callback._active = True
    callback.on_train_batch_begin(0)
    assert callback._active is False
