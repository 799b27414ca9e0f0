"""AlexNet (Krizhevsky et al., 2012) on one device, BN in place of local response
normalization; padded throughout. For 32x32 images pass ``stem_strides=1``."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head, conv_bn_relu


def build_alexnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
    dense_units: int = 4096,
    dropout: float = 0.5,
    stem_strides: int = 4,
) -> keras.Model:
    """Five convolutions, three overlapping 3x3/2 pools, two dense layers with dropout."""
    if len(filters) != 5:
        raise ValueError(f"alexnet has 5 convolutions: give 5 filters, got {list(filters)}.")
    inputs = keras.Input(shape=input_shape)
    x = conv_bn_relu(inputs, filters[0], 11, strides=stem_strides)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = conv_bn_relu(x, filters[1], 5)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for width in filters[2:]:
        x = conv_bn_relu(x, width, 3)
    x = layers.Flatten()(layers.MaxPooling2D(3, strides=2, padding="same")(x))
    for _ in range(2):
        x = layers.Dropout(dropout)(layers.Dense(dense_units, activation="relu")(x))
    return keras.Model(inputs, classifier_head(num_classes)(x), name="alexnet")
