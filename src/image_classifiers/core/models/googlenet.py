"""GoogLeNet / Inception v1 (Szegedy et al., 2015) with batch normalization, padded
throughout; auxiliary heads count in training only. For 32x32 images pass ``stem_strides=1``."""

import keras
from keras import layers

from image_classifiers.core.models.auxiliary import AuxiliaryHeadsModel
from image_classifiers.core.models.blocks import classifier_head, conv_bn_relu

# Widths of each module's branches, as in table 1 of the paper:
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection).
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = ("4a", "5a")  # a 3x3/2 max pool precedes these modules
AUXILIARY_AFTER = ("4a", "4d")


def _inception(x, widths: tuple[int, ...], name: str):
    one, three_reduce, three, five_reduce, five, pool_projection = widths
    branch_1 = conv_bn_relu(x, one, 1)
    branch_3 = conv_bn_relu(conv_bn_relu(x, three_reduce, 1), three, 3)
    branch_5 = conv_bn_relu(conv_bn_relu(x, five_reduce, 1), five, 5)
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same")(x)
    branch_pool = conv_bn_relu(branch_pool, pool_projection, 1)
    return layers.Concatenate(name=f"inception_{name}")([branch_1, branch_3, branch_5, branch_pool])


def _auxiliary_head(x, num_classes: int, dense_units: int, dropout: float, name: str):
    x = layers.AveragePooling2D(5, strides=3, padding="same")(x)
    x = conv_bn_relu(x, 128, 1)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return classifier_head(num_classes, name=name)(x)


def build_googlenet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    width_multiplier: float = 1.0,
    dropout: float = 0.4,
    aux_heads: bool = True,
    aux_weight: float = 0.3,
    aux_dense_units: int = 1024,
    aux_dropout: float = 0.7,
    stem_strides: int = 2,
) -> keras.Model:
    """``width_multiplier`` scales every convolution (0.25: a quick CPU model)."""

    def scaled(width: int) -> int:
        return max(1, round(width * width_multiplier))

    inputs = keras.Input(shape=input_shape)

    x = conv_bn_relu(inputs, scaled(64), 7, strides=stem_strides)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = conv_bn_relu(x, scaled(64), 1)
    x = conv_bn_relu(x, scaled(192), 3)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

    auxiliary = []
    for name, widths in MODULES.items():
        if name in POOL_BEFORE:
            x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = _inception(x, tuple(scaled(w) for w in widths), name)
        if aux_heads and name in AUXILIARY_AFTER:
            head = f"aux_predictions_{name}"
            auxiliary.append(_auxiliary_head(x, num_classes, aux_dense_units, aux_dropout, head))

    x = layers.Dropout(dropout)(layers.GlobalAveragePooling2D()(x))
    outputs = classifier_head(num_classes)(x)
    if not aux_heads:
        return keras.Model(inputs, outputs, name="googlenet")
    network = keras.Model(inputs, [outputs, *auxiliary], name="googlenet_network")
    return AuxiliaryHeadsModel(network, aux_weight=aux_weight, name="googlenet")
