"""The small residual convnet of Chollet's *Deep Learning with Python*, 2nd ed., ch. 9:
297,697 parameters at 32x32x3 with 2 classes; padded throughout."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head


def build_residual_convnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128),
) -> keras.Model:
    """Residual blocks of two 3x3 convolutions; every block but the last halves the size."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(filters):
        residual = x
        x = layers.Conv2D(width, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(width, 3, activation="relu", padding="same")(x)
        if i < len(filters) - 1:
            x = layers.MaxPooling2D(2, padding="same")(x)
            # The book's Conv2D(width, 1, strides=2) as "every second pixel, then 1x1": the
            # same function and weights. TensorFlow 2.21's oneDNN CPU kernel for the strided
            # 1x1 convolution's weight gradient corrupts the heap when the input has few
            # channels (the RGB image) and the stride leaves its last row unread.
            residual = layers.Conv2D(width, 1)(layers.MaxPooling2D(1, strides=2)(residual))
        elif residual.shape[-1] != width:
            residual = layers.Conv2D(width, 1)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, classifier_head(num_classes)(x), name="residual_convnet")
