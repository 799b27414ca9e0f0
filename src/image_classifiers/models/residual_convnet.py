"""The small residual convnet of Chollet's *Deep Learning with Python*, 2nd ed., ch. 9.

297,697 parameters at 32x32x3 with 2 classes. Padded throughout, so any image size builds.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head


def _residual_block(x, width: int, pooling: bool):
    """Two 3x3 convolutions, an optional 2x2 pool, plus a (projected) shortcut."""
    residual = x
    x = layers.Conv2D(width, 3, activation="relu", padding="same")(x)
    x = layers.Conv2D(width, 3, activation="relu", padding="same")(x)
    if pooling:
        x = layers.MaxPooling2D(2, padding="same")(x)
        # The book's Conv2D(width, 1, strides=2), written as "keep every second pixel, then
        # the 1x1 convolution": the same function and weights. TensorFlow 2.21's oneDNN CPU
        # kernel for the strided 1x1 convolution's weight gradient (jit_1x1:avx2
        # backward_weights) corrupts the heap when the input has few channels (the RGB image
        # here) and the stride leaves its last row and column unread (even sizes).
        residual = layers.MaxPooling2D(1, strides=2)(residual)
        residual = layers.Conv2D(width, 1)(residual)
    elif residual.shape[-1] != width:
        residual = layers.Conv2D(width, 1)(residual)
    return layers.add([x, residual])


def build_residual_convnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128),
) -> keras.Model:
    """Residual blocks; every block but the last halves the resolution.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        filters: Width of each residual block.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(filters):
        x = _residual_block(x, width, pooling=i < len(filters) - 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="residual_convnet")
