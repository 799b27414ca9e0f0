"""The small CNN taught for Fashion-MNIST.

225,034 parameters at 28x28x1 with 10 classes; the unpadded convolutions need 10x10 images.
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
    """3x3 convolution + 2x2 pool per entry of ``filters``, a dense layer, the classifier."""
    return conv_pool_dense(
        input_shape, num_classes, filters=tuple(filters), kernel=3, dense_units=dense_units,
        dropout=dropout, name="small_cnn",
    )  # fmt: skip
