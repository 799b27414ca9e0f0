"""Feature maps and Grad-CAM: on every kind of model the project builds, on a tiny trained
model whose class is decided by a planted square, and the same heatmaps on every backend."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_env import backend_env

from image_classifiers.core.inspection import (
    convolution_layers,
    feature_maps,
    grad_cam,
    last_feature_map_layer,
    tapped_model,
)
from image_classifiers.core.models import build_classifier
from image_classifiers.core.models.transfer import build_transfer_model

SIZE = 24
SQUARE = 6


def planted_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise; class 1 images hold a bright square at a random place. Returns images,
    labels and each image's square mask (all False for class 0)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, (n, SIZE, SIZE, 1)).astype("uint8")
    labels = (np.arange(n) % 2).astype("int32")
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in np.flatnonzero(labels):
        top, left = rng.integers(0, SIZE - SQUARE, 2)
        images[i, top : top + SQUARE, left : left + SQUARE] = 255
        masks[i, top : top + SQUARE, left : left + SQUARE] = True
    return images, labels, masks


def planted_model(seed: int = 0) -> keras.Model:
    """A tiny convnet nested in an outer model, as build_classifier nests its backbones."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    backbone = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    image = keras.Input((SIZE, SIZE, 1))
    return keras.Model(image, backbone(keras.layers.Rescaling(1 / 255)(image)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[keras.Model, Path]:
    images, labels, _ = planted_images(128, seed=0)
    model = planted_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=15, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("planted") / "planted.keras"
    model.save(path)
    return model, path


def test_heatmaps_light_up_the_planted_square(trained):
    model, _ = trained
    images, labels, masks = planted_images(16, seed=1)
    probabilities = keras.ops.convert_to_numpy(model(images))
    assert (probabilities.argmax(-1) == labels).mean() == 1  # the model learnt the square
    squares = labels == 1
    heat = grad_cam(model, images[squares], labels[squares])
    assert heat.shape == (squares.sum(), SIZE, SIZE)
    assert heat.min() >= 0 and heat.max() <= 1
    inside = np.array([h[m].mean() for h, m in zip(heat, masks[squares], strict=True)])
    outside = np.array([h[~m].mean() for h, m in zip(heat, masks[squares], strict=True)])
    assert (inside > 2 * outside).all(), (inside, outside)
    # The hottest pixel of each map is on (or next to) its square.
    for h, mask in zip(heat, masks[squares], strict=True):
        row, column = np.unravel_index(h.argmax(), h.shape)
        rows, columns = np.nonzero(mask)
        assert (
            rows.min() - 2 <= row <= rows.max() + 2
            and columns.min() - 2 <= column <= columns.max() + 2
        )


def test_the_predicted_class_is_explained_by_default(trained):
    model, _ = trained
    images, labels, _ = planted_images(6, seed=2)
    np.testing.assert_allclose(grad_cam(model, images), grad_cam(model, images, labels), atol=1e-6)


@pytest.mark.parametrize(
    ("architecture", "shape", "classes", "options", "layer"),
    [
        # 16+ channels: TensorFlow 2.21's oneDNN weight gradient of a strided 1x1 convolution
        # on 8 channels aborts the process on AVX-512 CPUs (benchmarks/onednn_conv1x1_probe.py).
        ("mini_xception", (40, 40, 3), 2, {"filters": (16, 32)}, keras.layers.Add),
        ("simple_convnet", (80, 80, 3), 3, {"filters": (4, 8)}, keras.layers.Conv2D),
        ("lenet", (28, 28, 1), 10, {}, keras.layers.Conv2D),
        ("residual_convnet", (32, 32, 3), 2, {"filters": (4, 8)}, keras.layers.Add),
    ],
)
def test_every_architecture_can_be_looked_inside(architecture, shape, classes, options, layer):
    model = build_classifier(architecture, shape, classes, augmentation={"zoom": 0.2}, **options)
    images = np.random.default_rng(0).integers(0, 256, (3, *shape)).astype("uint8")
    assert isinstance(last_feature_map_layer(model), layer)
    heat = grad_cam(model, images, batch_size=2)
    assert heat.shape == (3, *shape[:2]) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1
    maps = feature_maps(model, images[0], layers=2)
    first = convolution_layers(model)[:2]
    assert [name for name, _ in maps] == [conv.name for conv in first]
    assert maps[0][1].shape[-1] == first[0].filters
    # The tapped model shares the trained weights: same prediction as the model itself.
    tapped = tapped_model(model, first)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tapped(images)[0]),
        keras.ops.convert_to_numpy(model(images)),
        atol=1e-5,
    )


@pytest.mark.slow
def test_transfer_models_are_looked_inside_their_pretrained_base():
    model = build_transfer_model((32, 32, 3), 4, weights=None, dense_units=8)
    assert last_feature_map_layer(model).name == "block5_conv3"
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    heat = grad_cam(model, images, np.array([0, 3]))
    assert heat.shape == (2, 32, 32) and heat.min() >= 0 and heat.max() <= 1
    assert [name for name, _ in feature_maps(model, images[0], layers=2)] == [
        "block1_conv1",
        "block1_conv2",
    ]


@pytest.mark.slow
def test_googlenet_auxiliary_heads_are_left_out():
    model = build_classifier("googlenet", (64, 64, 3), 3, width_multiplier=0.25, aux_dense_units=8)
    convolutions = convolution_layers(model)
    assert not any("aux" in layer.name for layer in convolutions)
    heat = grad_cam(model, np.zeros((1, 64, 64, 3), "uint8"))
    assert heat.shape == (1, 64, 64)


def test_a_model_without_convolutions_is_refused():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    )
    with pytest.raises(ValueError, match="no convolution"):
        grad_cam(model, np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="no convolution"):
        feature_maps(model, np.zeros((8, 8, 1)))


# Runs in the child process: heatmaps and feature maps of the saved planted model.
SCRIPT = """
import json, sys
import keras, numpy as np
sys.path.insert(0, sys.argv[2])
from test_inspection import planted_images
from image_classifiers.core.inspection import feature_maps, grad_cam
model = keras.saving.load_model(sys.argv[1])
images, labels, _ = planted_images(6, seed=3)
print(json.dumps({
    "backend": keras.backend.backend(),
    "heat": grad_cam(model, images, labels).tolist(),
    "maps": feature_maps(model, images[1], layers=1)[0][1].tolist(),
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_same_heatmaps_on_every_backend(backend, trained):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    model, path = trained
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), str(Path(__file__).parent)],
        env=backend_env(backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["backend"] == backend
    images, labels, _ = planted_images(6, seed=3)
    np.testing.assert_allclose(found["heat"], grad_cam(model, images, labels), atol=1e-4)
    np.testing.assert_allclose(
        found["maps"], feature_maps(model, images[1], layers=1)[0][1], atol=1e-4
    )
