"""Data-parallel training (training.distribution) with keras.distribution on JAX.

The two-device runs happen in a child process on the CPU with two XLA host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``): the device count is fixed when
JAX starts, so this process (one device) cannot do it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import keras
import pytest
from backend_env import backend_env

from image_classifiers.core.params import TrainingParams
from image_classifiers.core.training import data_parallel

# Loss per epoch of the 2-device run vs the 1-device run: the same global batches and
# weights, only the order of the float32 sums over the batch differs.
LOSS_RTOL = 1e-4

CHILD = r"""
import json
import jax
import keras
import numpy as np
from keras.src.backend.jax import distribution_lib as jax_distribution_lib

from image_classifiers.core.params import TrainingParams
from image_classifiers.core.training import fit_model, model_build_scope, predict_probabilities

# Record the sharding of every batch Keras hands to the devices (the x of each step).
shardings = []
distribute = jax_distribution_lib.distribute_data_input

def recording(per_process_batch, layout, batch_dim_name):
    array = distribute(per_process_batch, layout, batch_dim_name)
    if array.ndim == 4:
        shards = sorted((str(s.device), s.data.shape[0]) for s in array.addressable_shards)
        shardings.append({"devices": len(array.sharding.device_set), "shards": shards})
    return array

jax_distribution_lib.distribute_data_input = recording

rng = np.random.default_rng(0)
labels = (np.arange(48) % 2).astype(np.int32)
base = np.where(labels == 0, 60, 190)[:, None, None, None]
images = np.clip(rng.normal(base, 30, (48, 12, 12, 3)), 0, 255).astype(np.uint8)
train = {"images": images[:32], "labels": labels[:32], "classes": ["cat", "dog"], "files": []}
validation = {"images": images[32:], "labels": labels[32:], "classes": ["cat", "dog"], "files": []}

def run(distribution):
    training = TrainingParams(epochs=3, batch_size=8, learning_rate=0.01, seed=3,
                              distribution=distribution)
    with model_build_scope(training):
        inputs = keras.Input((12, 12, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.Conv2D(4, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model, history = fit_model(model, train, validation, training)
    probabilities = predict_probabilities(model, validation["images"], batch_size=8)
    return history["loss"], probabilities.tolist()

one_loss, one_probabilities = run("none")
one_device_batches = len(shardings)
two_loss, two_probabilities = run("data_parallel")
print(json.dumps({
    "devices": len(jax.devices()),
    "one_device": {"loss": one_loss, "sharded_batches": one_device_batches},
    "two_devices": {"loss": two_loss, "batches": shardings[one_device_batches:]},
    "max_probability_difference": float(np.max(np.abs(
        np.array(one_probabilities) - np.array(two_probabilities)))),
}))
"""


def run_on_two_devices(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child process with JAX on two simulated CPU devices."""
    env = backend_env("jax")
    env["XLA_FLAGS"] += " --xla_force_host_platform_device_count=2"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_two_devices_shard_every_batch_and_match_one_device():
    result = run_on_two_devices(CHILD)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    # One device: no distribution, so Keras never shards a batch.
    assert report["one_device"]["sharded_batches"] == 0
    batches = report["two_devices"]["batches"]
    # 3 epochs x 4 training steps, plus the validation batches: each split 4 + 4.
    assert len(batches) >= 12
    for batch in batches:
        assert batch["devices"] == 2
        assert [size for _, size in batch["shards"]] == [4, 4]
        assert len({device for device, _ in batch["shards"]}) == 2
    one, two = report["one_device"]["loss"], report["two_devices"]["loss"]
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=LOSS_RTOL)
    assert report["max_probability_difference"] < 1e-4


def test_distribution_option_is_checked():
    assert TrainingParams().distribution == "auto"
    with pytest.raises(ValueError, match=r"distribution"):
        TrainingParams(distribution="model_parallel")


def test_auto_and_none_train_on_one_device_here():
    # This process has one device (JAX) or a backend Keras cannot distribute.
    assert data_parallel(TrainingParams(distribution="auto")) is None
    assert data_parallel(TrainingParams(distribution="none")) is None


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the message is for other backends")
def test_data_parallel_on_a_backend_keras_cannot_distribute_says_so():
    with pytest.raises(ValueError, match=r"needs the JAX backend.*KERAS_BACKEND=jax"):
        data_parallel(TrainingParams(distribution="data_parallel"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_batch_the_devices_cannot_split_is_refused():
    code = (
        "from image_classifiers.core.params import TrainingParams\n"
        "from image_classifiers.core.training import data_parallel\n"
        "try:\n"
        "    data_parallel(TrainingParams(distribution='auto', batch_size=7))\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    assert "cannot be split evenly across 2 devices" in run_on_two_devices(code).stdout
