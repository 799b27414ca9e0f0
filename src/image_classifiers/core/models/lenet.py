"""LeNet-5 as taught for MNIST (LeCun et al., 1998, with ReLU and max pooling) and the small
CNN taught for Fashion-MNIST. At 28x28x1 with 10 classes: lenet 431,080 parameters (needs
16x16 images, unpadded), small_cnn 225,034 (needs 10x10)."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head


def _conv_pool_dense(input_shape, num_classes, filters, kernel, *, dense_units, dropout, name):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        x = layers.MaxPooling2D(2)(layers.Conv2D(width, kernel, activation="relu")(x))
    x = layers.Dense(dense_units, activation="relu")(layers.Flatten()(x))
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(num_classes)(x), name=name)


def build_lenet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, int] = (20, 50),
    dense_units: int = 500,
    dropout: float = 0.0,
) -> keras.Model:
    """Two 5x5 convolution + pool stages, a dense layer."""
    return _conv_pool_dense(
        input_shape, num_classes, filters, 5, dense_units=dense_units, dropout=dropout, name="lenet"
    )


def build_small_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64),
    dense_units: int = 128,
    dropout: float = 0.0,
) -> keras.Model:
    """A 3x3 convolution + pool stage per entry of ``filters``, a dense layer."""
    return _conv_pool_dense(
        input_shape, num_classes, filters, 3, dense_units=dense_units, dropout=dropout,
        name="small_cnn",
    )  # fmt: skip
