"""The small CNN usually taught for Fashion-MNIST: two convolution + pooling stages, a dense
layer, the classifier.

225,034 parameters at 28x28x1 with 10 classes. Its unpadded convolutions need images of at
least 10x10.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def build_small_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64),
    dense_units: int = 128,
    dropout: float = 0.0,
) -> keras.Model:
    """3x3 Conv2D (ReLU) + 2x2 max pooling per entry of ``filters``, dense ReLU, classifier.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of each convolution.
        dense_units: Width of the hidden dense layer.
        dropout: Dropout rate before the classifier (0 = none).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        x = layers.Conv2D(width, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="small_cnn")
