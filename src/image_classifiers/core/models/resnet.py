"""ResNet with pre-activation units (He et al., "Identity Mappings in Deep Residual Networks");
for 32x32 images: ``stem_kernel=3, stem_strides=1, stem_pool=False``."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import bn_relu, classifier_head, conv

# depth -> (bottleneck units?, units per stage)
DEPTHS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}


def _residual_unit(x, width: int, strides: int, bottleneck: bool):
    out_width = width * 4 if bottleneck else width
    preactivated = bn_relu(x)
    if strides == 1 and x.shape[-1] == out_width:
        shortcut = x
    else:
        shortcut = conv(preactivated, out_width, 1, strides=strides)
    if bottleneck:
        y = conv(preactivated, width, 1)
        y = conv(bn_relu(y), width, 3, strides=strides)
        y = conv(bn_relu(y), out_width, 1)
    else:
        y = conv(preactivated, width, 3, strides=strides)
        y = conv(bn_relu(y), width, 3)
    return layers.add([y, shortcut])


def build_resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 18,
    width: int = 64,
    stem_kernel: int = 7,
    stem_strides: int = 2,
    stem_pool: bool = True,
    dropout: float = 0.0,
) -> keras.Model:
    """A stem, four stages (``width`` doubling, resolution halving), BN -> ReLU, the head."""
    if depth not in DEPTHS:
        raise ValueError(f"resnet depth must be one of {', '.join(map(str, DEPTHS))}; got {depth}.")
    bottleneck, units_per_stage = DEPTHS[depth]
    inputs = keras.Input(shape=input_shape)
    x = conv(inputs, width, stem_kernel, strides=stem_strides)  # the first unit normalizes it
    if stem_pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, units in enumerate(units_per_stage):
        for unit in range(units):
            strides = 2 if stage > 0 and unit == 0 else 1
            x = _residual_unit(x, width * 2**stage, strides, bottleneck)
    x = layers.GlobalAveragePooling2D()(bn_relu(x))
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(num_classes)(x), name=f"resnet{depth}")
