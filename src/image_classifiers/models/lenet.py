"""LeNet-5 as usually taught for MNIST (LeCun et al., 1998, with ReLU and max pooling).

431,080 parameters at 28x28x1 with 10 classes. Its unpadded convolutions need images of at
least 16x16.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def build_lenet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, int] = (20, 50),
    dense_units: int = 500,
    dropout: float = 0.0,
) -> keras.Model:
    """Two 5x5 convolution + 2x2 pool stages, one hidden dense layer, classifier.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of the two convolutions.
        dense_units: Width of the hidden dense layer.
        dropout: Dropout rate before the classifier (0 = none, as in the original).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        x = layers.Conv2D(width, 5, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="lenet")
