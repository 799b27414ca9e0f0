"""The first convnet of Chollet's *Deep Learning with Python*, ch. 8.

991,041 parameters at 180x180x3 with 2 classes. Its unpadded convolutions and pools need
images of at least 78x78.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def build_simple_convnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128, 256, 256),
    dropout: float = 0.5,
) -> keras.Model:
    """Stacked Conv2D/MaxPooling blocks, flatten, dropout, dense classifier.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of each 3x3 convolution; every one but the last is followed by a pool.
        dropout: Dropout rate before the classifier.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 3, activation="relu")(x)
        # The reference pools after every block but the last.
        if i < len(filters) - 1:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="simple_convnet")
