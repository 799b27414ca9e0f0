"""LeNet-5 as taught for MNIST (LeCun et al., 1998, with ReLU and max pooling).

431,080 parameters at 28x28x1 with 10 classes; the unpadded convolutions need 16x16 images.
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
    """Two 5x5 convolution + 2x2 pool stages, one hidden dense layer, the classifier."""
    return conv_pool_dense(
        input_shape, num_classes, filters=tuple(filters), kernel=5, dense_units=dense_units,
        dropout=dropout, name="lenet",
    )  # fmt: skip
