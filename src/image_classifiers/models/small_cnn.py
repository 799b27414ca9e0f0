"""The small CNN usually taught for Fashion-MNIST: two convolution + pooling stages, a dense
layer, the classifier.

225,034 parameters at 28x28x1 with 10 classes. Its unpadded convolutions need images of at
least 10x10.
"""

from __future__ import annotations

import keras

from image_classifiers.models.blocks import conv_pool_dense


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
    return conv_pool_dense(
        input_shape,
        num_classes,
        filters=tuple(filters),
        kernel=3,
        dense_units=dense_units,
        dropout=dropout,
        name="small_cnn",
    )
