"""A VGG-style CNN for CIFAR-10 with the over-fitting remedies as options.

Blocks of two 3x3 "same" convolutions and a 2x2 max pooling (32, 64, 128 filters), a dense
ReLU layer of 128 units, the classifier: 550,570 parameters at 32x32x3 with 10 classes; with
``batch_norm`` 552,298, 551,146 trainable (the convolutions and the dense layer lose their
bias and gain 4 BatchNormalization weights per channel, 2 of them trainable). ``l2`` (a
penalty on every kernel) and ``dropout`` add none.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def build_vgg_cifar(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128),
    dense_units: int = 128,
    l2: float = 0.0,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> keras.Model:
    """VGG blocks (conv, conv, pool) -> flatten -> dense -> classifier.

    Args:
        input_shape: ``(height, width, channels)`` of normalised images.
        num_classes: Number of classes.
        filters: Width of each block's two convolutions; each block halves the resolution.
        dense_units: Width of the hidden dense layer.
        l2: L2 penalty on every convolution and dense kernel (0 = none).
        dropout: Dropout rate after each block and before the classifier (0 = none).
        batch_norm: BatchNormalization between each convolution (then bias-free) and its
            ReLU, and after the dense layer.
    """
    if l2 < 0 or not 0 <= dropout < 1:
        raise ValueError(f"l2 must be >= 0 and dropout in [0, 1), got {l2} and {dropout}.")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        for _ in range(2):
            x = layers.Conv2D(
                width,
                3,
                padding="same",
                use_bias=not batch_norm,
                kernel_initializer="he_uniform",
                kernel_regularizer=regularizer,
            )(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(
        dense_units,
        use_bias=not batch_norm,
        kernel_initializer="he_uniform",
        kernel_regularizer=regularizer,
    )(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="vgg_cifar")
