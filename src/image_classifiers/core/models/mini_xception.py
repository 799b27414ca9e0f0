"""The mini-Xception of Chollet's *Deep Learning with Python*, 2nd ed., ch. 9: 721,857
parameters (718,849 trainable) at 180x180x3 with 2 classes; padded throughout."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import bn_relu, classifier_head


def build_mini_xception(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128, 256, 512),
    stem_filters: int = 32,
    dropout: float = 0.5,
) -> keras.Model:
    """A 5x5 entry convolution, then one resolution-halving residual block per filter."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(stem_filters, 5, use_bias=False)(inputs)  # no bias: BN follows
    for width in filters:
        residual = x
        for _ in range(2):  # BN -> ReLU -> SeparableConv2D, twice
            x = bn_relu(x)
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        # Project the residual to the new width and resolution.
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.Dropout(dropout)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, classifier_head(num_classes)(x), name="mini_xception")
