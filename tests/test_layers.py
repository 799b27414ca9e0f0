"""RandomAugment: identity at inference, seedable randomness in training, the same geometry as
Keras' own augmentation layers, serialization, and XLA compilability."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.src.trainers.trainer import model_supports_jit

from image_classifiers.core.layers import RandomAugment, affine_warp

ALL_ON = {
    "horizontal_flip": True,
    "rotation": 0.1,
    "zoom": 0.2,
    "translation": 0.1,
    "contrast": 0.2,
    "brightness": 0.2,
}


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((8, 12, 16, 3)).astype("float32")


def augment(layer: RandomAugment, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(images, training=True))


def test_identity_at_inference(images):
    layer = RandomAugment(**ALL_ON, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images)), images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)


def test_random_in_training_and_seedable(images):
    first = augment(RandomAugment(**ALL_ON, seed=1), images)
    assert first.shape == images.shape
    assert not np.allclose(first, images)
    np.testing.assert_array_equal(augment(RandomAugment(**ALL_ON, seed=1), images), first)
    assert not np.allclose(augment(RandomAugment(**ALL_ON, seed=2), images), first)


def test_each_call_draws_new_transforms(images):
    layer = RandomAugment(**ALL_ON, seed=1)
    assert not np.allclose(augment(layer, images), augment(layer, images))


def test_images_of_a_batch_get_different_transforms(images):
    same = np.repeat(images[:1], 8, axis=0)
    out = augment(RandomAugment(rotation=0.2, seed=3), same)
    assert not np.allclose(out[0], out[1])


def test_horizontal_flip_mirrors_exactly_about_half_the_images():
    batch = np.random.default_rng(1).random((32, 6, 10, 3)).astype("float32")
    out = augment(RandomAugment(horizontal_flip=True, seed=0), batch)
    flipped = np.array([np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch, strict=True)])
    kept = np.array([np.array_equal(o, b) for o, b in zip(out, batch, strict=True)])
    assert np.all(flipped != kept)  # each image is one or the other
    assert 4 <= sum(flipped) <= 28


def test_quarter_turn_rotates_a_square_image():
    image = np.random.default_rng(2).random((1, 9, 9, 1)).astype("float32")
    out = augment(RandomAugment(rotation=(0.25, 0.25)), image)
    # A quarter turn counter-clockwise, as keras.layers.RandomRotation turns positive angles.
    np.testing.assert_allclose(out[0, :, :, 0], np.rot90(image[0, :, :, 0], k=1), atol=1e-5)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"rotation": (0.1, 0.1)}, lambda: keras.layers.RandomRotation((0.1, 0.1))),
        ({"zoom": (-0.3, -0.3)}, lambda: keras.layers.RandomZoom((-0.3, -0.3))),
        ({"zoom": (0.3, 0.3)}, lambda: keras.layers.RandomZoom((0.3, 0.3))),
        (
            {"translation": (0.25, 0.25)},
            lambda: keras.layers.RandomTranslation((0.25, 0.25), (0.25, 0.25)),
        ),
    ],
    ids=["rotation", "zoom_in", "zoom_out", "translation"],
)
def test_geometry_matches_the_keras_layers(images, ours, theirs):
    """With the range pinned to one value the Keras layers are deterministic: same pixels."""
    expected = keras.ops.convert_to_numpy(theirs()(images, training=True))
    np.testing.assert_allclose(augment(RandomAugment(**ours), images), expected, atol=1e-5)


def test_contrast_scales_deviation_from_the_channel_mean(images):
    out = augment(RandomAugment(contrast=(0.5, 0.5)), images)
    mean = images.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, np.clip((images - mean) * 1.5 + mean, 0, 1), atol=1e-5)


def test_brightness_shifts_by_a_fraction_of_the_value_range():
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    layer = RandomAugment(brightness=(0.2, 0.2), value_range=(0, 255))
    np.testing.assert_allclose(augment(layer, pixels), np.clip(pixels + 51, 0, 255), atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_shape_and_dtype_are_preserved(dtype):
    batch = np.random.default_rng(4).uniform(0, 255, (3, 10, 14, 3)).astype(dtype)
    layer = RandomAugment(**ALL_ON, value_range=(0, 255), seed=0, dtype=dtype)
    out = layer(batch, training=True)
    assert tuple(out.shape) == batch.shape
    assert keras.backend.standardize_dtype(out.dtype) == dtype


def test_fill_mode_nearest_repeats_edge_pixels():
    image = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    out = augment(RandomAugment(translation=(0.5, 0.5), fill_mode="nearest"), image)
    # Shifted 2 pixels right and down; the uncovered top-left repeats the first row/column.
    source = np.clip(np.arange(4) - 2, 0, 3)
    np.testing.assert_array_equal(out[0, :, :, 0], image[0, source][:, source, 0])


@pytest.mark.parametrize("fill_mode", ["reflect", "nearest"])
def test_affine_warp_matches_keras_affine_transform(images, fill_mode):
    layer = RandomAugment(horizontal_flip=True, rotation=0.2, zoom=0.3, translation=0.2)
    draws = keras.random.uniform((8, 7), seed=5)
    transforms = layer._transforms(draws, 12, 16)
    expected = keras.ops.image.affine_transform(images, transforms, "bilinear", fill_mode)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(affine_warp(images, transforms, fill_mode)),
        keras.ops.convert_to_numpy(expected),
        atol=1e-5,
    )


def test_config_round_trip():
    layer = RandomAugment(**ALL_ON, seed=7, value_range=(0, 255), fill_mode="nearest")
    config = layer.get_config()
    assert config["rotation"] == [-0.1, 0.1]
    assert RandomAugment.from_config(config).get_config() == config


def test_saved_model_keeps_the_layer(tmp_path, images):
    inputs = keras.Input(images.shape[1:])
    model = keras.Model(inputs, RandomAugment(**ALL_ON, seed=3, name="augment")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("augment"), RandomAugment)
    assert loaded.get_layer("augment").get_config() == model.get_layer("augment").get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), images)


@pytest.mark.parametrize(
    "options",
    [
        {"rotation": 2},
        {"zoom": -1},
        {"zoom": (0.1, 0.2, 0.3)},
        {"translation": "wide"},
        {"contrast": True},
        {"value_range": (255, 0)},
        {"value_range": 1},
        {"fill_mode": "wrap"},
        {"horizontal_flip": "yes"},
    ],
)
def test_bad_options_raise_clear_errors(options):
    with pytest.raises(ValueError, match="RandomAugment"):
        RandomAugment(**options)


def test_rejects_single_images():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        RandomAugment(zoom=0.1)(np.zeros((8, 8, 3), "float32"), training=True)


def tiny_model(augmentation: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = augmentation(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def test_model_with_random_augment_supports_jit():
    """`jit_compile="auto"` compiles only models whose layers all support it (trainer.py)."""
    assert RandomAugment(**ALL_ON).supports_jit
    assert model_supports_jit(tiny_model(RandomAugment(**ALL_ON)))
    # The check can fail: Keras' own rotation layer switches XLA off for the whole model.
    assert not model_supports_jit(tiny_model(keras.layers.RandomRotation(0.1)))


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_training_step_compiles(jit_compile):
    """A real XLA compile of fit on this backend (TensorFlow's affine_transform would fail),
    and the plain graph (tf.function) without XLA."""
    model = tiny_model(RandomAugment(**ALL_ON, seed=0))
    model.compile(optimizer="sgd", loss="binary_crossentropy", jit_compile=jit_compile)
    assert model.jit_compile == jit_compile
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.random((8, 8, 8, 3), dtype="float32"), rng.integers(0, 2, 8), batch_size=4, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
