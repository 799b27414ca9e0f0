"""Helpers for the transfer_learning tests: a tiny stand-in base and toy image splits."""

from __future__ import annotations

import keras
import numpy as np


def tiny_base(include_top: bool = False, weights: str | None = None, input_shape=None):
    """Conv/BN/ReLU twice, with a dropout in between: the parts that matter for freezing."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    model = keras.Model(inputs, x, name="tiny_base")
    if weights is not None:
        model.load_weights(weights)
    return model


def image_set(n: int, seed: int, size: int = 32) -> dict:
    """Dark cats, bright dogs: separable enough for a few epochs of a tiny model."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    level = np.where(labels == 0, 60, 190)[:, None, None, None]
    images = np.clip(rng.normal(level, 30, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return {"images": images, "labels": labels, "classes": ["cat", "dog"], "files": []}
