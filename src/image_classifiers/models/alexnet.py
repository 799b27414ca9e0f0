"""AlexNet (Krizhevsky et al., 2012) with batch normalization in place of local response
normalization, on one device (no two-GPU split).

Five convolutions (11x11, 5x5, three 3x3), three overlapping 3x3/2 pools, two 4096-wide dense
layers with dropout. Everything pads ("same"), so any image size builds; for small images
(32x32) pass ``stem_strides=1`` to keep some resolution for the later layers.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head, conv_bn_relu


def build_alexnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
    dense_units: int = 4096,
    dropout: float = 0.5,
    stem_strides: int = 4,
) -> keras.Model:
    """Build AlexNet.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of the five convolutions.
        dense_units: Width of the two hidden dense layers.
        dropout: Dropout rate after each hidden dense layer.
        stem_strides: Stride of the 11x11 entry convolution (4 in the paper).
    """
    if len(filters) != 5:
        raise ValueError(f"alexnet has 5 convolutions: give 5 filters, got {list(filters)}.")
    inputs = keras.Input(shape=input_shape)

    # Entry: large strided kernel, then an overlapping pool.
    x = conv_bn_relu(inputs, filters[0], 11, strides=stem_strides)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = conv_bn_relu(x, filters[1], 5)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

    # Three 3x3 convolutions without pooling in between.
    for width in filters[2:]:
        x = conv_bn_relu(x, width, 3)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

    # Classifier.
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="alexnet")
