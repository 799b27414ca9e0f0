"""Normalisation as a model option: rescale (default) or per-channel standardisation, inside
the saved model so that it still takes raw pixels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from image_classifiers.core.models import build_classifier, channel_moments
from image_classifiers.core.params import ModelOptions, TrainingParams
from image_classifiers.pipelines.model_training.nodes import build_model


def _images(channels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    offsets = np.array([30, 120, 200][:channels], dtype=np.float64)
    return np.clip(rng.normal(offsets, 10, (40, 16, 16, channels)), 0, 255).astype(np.uint8)


def test_channel_moments_match_numpy_in_chunks():
    images = _images(3)
    mean, variance = channel_moments(images, chunk=7)
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(variance, images.reshape(-1, 3).var(axis=0))


@pytest.mark.parametrize("channels", [1, 3])
def test_standardize_centres_each_channel_of_the_training_split(tmp_path, channels):
    images = _images(channels)
    model = build_classifier(
        "lenet",
        images.shape[1:],
        3,
        augmentation={"horizontal_flip": True, "brightness": 0.1},
        normalization="standardize",
        train_images=images,
        dense_units=8,
    )
    standardize = model.get_layer("standardize")
    assert "rescale" not in [layer.name for layer in model.layers]
    features = keras.ops.convert_to_numpy(standardize(images.astype("float32")))
    np.testing.assert_allclose(features.reshape(-1, channels).mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(features.reshape(-1, channels).std(axis=0), 1, atol=1e-3)
    # Augmentation acts on raw pixels, before standardisation, with the raw value range.
    assert model.get_layer("augment").value_range == (0.0, 255.0)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(images[:4], verbose=0), model.predict(images[:4], verbose=0), rtol=1e-5
    )


def test_rescale_stays_the_default_and_bad_choices_are_named():
    images = _images(3)
    model = build_classifier("lenet", images.shape[1:], 2, dense_units=8)
    assert model.layers[1].name == "rescale"
    with pytest.raises(ValueError, match="Unknown normalization 'zscore'; use one of rescale"):
        build_classifier("lenet", images.shape[1:], 2, normalization="zscore")
    with pytest.raises(ValueError, match="needs the training images"):
        build_classifier("lenet", images.shape[1:], 2, normalization="standardize")


def test_build_model_takes_normalization_from_the_model_options():
    images = _images(3)
    train_set = {"images": images, "labels": np.zeros(40, np.int32), "classes": ["a", "b"]}
    options = ModelOptions(architecture="lenet", normalization="standardize", dense_units=8)
    model = build_model(train_set, options, None, TrainingParams(seed=1))
    mean = keras.ops.convert_to_numpy(model.get_layer("standardize").mean).reshape(-1)
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(axis=0), rtol=1e-5)
