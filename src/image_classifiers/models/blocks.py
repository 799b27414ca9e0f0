"""Pieces several builders share: the classification head and the conv-BN-ReLU unit."""

from __future__ import annotations

import keras
from keras import layers


def classifier_head(num_classes: int, name: str = "predictions") -> keras.layers.Dense:
    """One sigmoid unit for two classes, a softmax over ``num_classes`` otherwise.

    The head computes in float32 even under a mixed-precision policy: probabilities near 0 or 1
    lose too much in bfloat16 for a stable cross-entropy.
    """
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name=name, dtype="float32")
    return layers.Dense(num_classes, activation="softmax", name=name, dtype="float32")


def conv_bn_relu(x, width: int, kernel: int, strides: int = 1):
    """Conv2D ("same" padding) -> BatchNormalization -> ReLU.

    The convolution has no bias: batch normalization's offset replaces it.
    """
    x = layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def conv_pool_dense(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...],
    kernel: int,
    dense_units: int,
    dropout: float,
    name: str,
) -> keras.Model:
    """Unpadded ``kernel``x``kernel`` Conv2D (ReLU) + 2x2 max pool per entry of ``filters``,
    one dense ReLU layer, optional dropout, the classifier: LeNet's shape, shared by the
    small CNNs built on it."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        x = layers.Conv2D(width, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)
