"""The first convnet of Chollet's *Deep Learning with Python*, ch. 8: 991,041 parameters at
180x180x3 with 2 classes; unpadded, it needs 78x78 images."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head


def build_simple_convnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128, 256, 256),
    dropout: float = 0.5,
) -> keras.Model:
    """3x3 convolutions, each but the last followed by a 2x2 pool; flatten, dropout."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 3, activation="relu")(x)
        if i < len(filters) - 1:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(dropout)(layers.Flatten()(x))
    return keras.Model(inputs, classifier_head(num_classes)(x), name="simple_convnet")
