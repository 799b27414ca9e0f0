"""The mini-Xception of Chollet's *Deep Learning with Python*, 2nd ed., ch. 9.

721,857 parameters (718,849 trainable) at 180x180x3 with 2 classes: depthwise-separable
convolutions, pre-activation batch normalization and residual connections. Every convolution
and pool pads ("same"), so any image size builds.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def build_mini_xception(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128, 256, 512),
    stem_filters: int = 32,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the mini-Xception.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of each residual block; each block halves the resolution.
        stem_filters: Width of the 5x5 entry convolution.
        dropout: Dropout rate before the classifier.
    """
    inputs = keras.Input(shape=input_shape)

    # Entry block: no bias, since batch normalization follows.
    x = layers.Conv2D(stem_filters, 5, use_bias=False)(inputs)

    for width in filters:
        residual = x

        # Two pre-activation separable convolutions (BN -> ReLU -> SeparableConv2D).
        for _ in range(2):
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project the residual to the new width and resolution, then add it.
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])

    # Classifier.
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="mini_xception")
