"""LeNet-5 as usually taught for MNIST (LeCun et al., 1998, with ReLU and max pooling).

431,080 parameters at 28x28x1 with 10 classes. Its unpadded convolutions need images of at
least 16x16.
"""

from __future__ import annotations

import keras

from image_classifiers.models.blocks import conv_pool_dense


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
    return conv_pool_dense(
        input_shape,
        num_classes,
        filters=tuple(filters),
        kernel=5,
        dense_units=dense_units,
        dropout=dropout,
        name="lenet",
    )
