"""Pieces several builders share: the classification head and small conv blocks."""

from __future__ import annotations

import keras
from keras import layers


def classifier_head(num_classes: int, name: str = "predictions") -> keras.layers.Dense:
    """One sigmoid unit for two classes, else a softmax; float32 under mixed precision
    (bfloat16 probabilities near 0 or 1 make the cross-entropy unstable)."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name=name, dtype="float32")
    return layers.Dense(num_classes, activation="softmax", name=name, dtype="float32")


def conv_bn_relu(x, width: int, kernel: int, strides: int = 1):
    """Conv2D ("same", no bias: the BN offset replaces it) -> BatchNormalization -> ReLU."""
    x = layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def conv_pool_dense(input_shape, num_classes: int, *, filters, kernel, dense_units, dropout, name):
    """Unpadded Conv2D (ReLU) + 2x2 max pool per entry of ``filters``, a dense ReLU layer,
    optional dropout, the classifier: LeNet's shape, shared by the small CNNs."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        x = layers.Conv2D(width, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dense(dense_units, activation="relu")(layers.Flatten()(x))
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(num_classes)(x), name=name)
