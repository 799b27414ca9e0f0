"""ResNet with pre-activation residual units (He et al., "Identity Mappings in Deep Residual
Networks", 2016).

Each unit is BN -> ReLU -> conv (twice for ``depth`` 18/34, or a 1x1-3x3-1x1 bottleneck for
50/101/152) added to an identity shortcut, or to a 1x1 projection of the pre-activated input
where the width or resolution changes. Everything pads ("same"), so any image size builds; for
small images (32x32) use the CIFAR-style stem: ``stem_kernel=3, stem_strides=1,
stem_pool=False``.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head

# depth -> (bottleneck units?, units per stage)
DEPTHS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
BOTTLENECK_EXPANSION = 4


def _bn_relu(x):
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def _conv(x, width: int, kernel: int, strides: int = 1):
    # No bias: every convolution feeds a batch normalization (or a sum that does).
    return layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False)(x)


def _residual_unit(x, width: int, strides: int, bottleneck: bool):
    """One pre-activation unit; ``width`` is the 3x3 convolution's width."""
    out_width = width * BOTTLENECK_EXPANSION if bottleneck else width
    preactivated = _bn_relu(x)

    # Shortcut: identity, or a projection of the pre-activated input when the shape changes.
    if strides == 1 and x.shape[-1] == out_width:
        shortcut = x
    else:
        shortcut = _conv(preactivated, out_width, 1, strides=strides)

    if bottleneck:
        y = _conv(preactivated, width, 1)
        y = _conv(_bn_relu(y), width, 3, strides=strides)
        y = _conv(_bn_relu(y), out_width, 1)
    else:
        y = _conv(preactivated, width, 3, strides=strides)
        y = _conv(_bn_relu(y), width, 3)
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
    """Build a pre-activation ResNet.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        depth: 18, 34, 50, 101 or 152 layers.
        width: Width of the first stage; each following stage doubles it.
        stem_kernel: Kernel size of the entry convolution (7; 3 for small images).
        stem_strides: Stride of the entry convolution (2; 1 for small images).
        stem_pool: Whether a 3x3/2 max pool follows the entry convolution.
        dropout: Dropout rate before the classifier (0 = none, as in the paper).
    """
    if depth not in DEPTHS:
        raise ValueError(f"resnet depth must be one of {', '.join(map(str, DEPTHS))}; got {depth}.")
    bottleneck, units_per_stage = DEPTHS[depth]
    inputs = keras.Input(shape=input_shape)

    # Stem: the first unit's pre-activation normalizes its output.
    x = _conv(inputs, width, stem_kernel, strides=stem_strides)
    if stem_pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

    # Four stages; all but the first start by halving the resolution.
    for stage, units in enumerate(units_per_stage):
        for unit in range(units):
            strides = 2 if stage > 0 and unit == 0 else 1
            x = _residual_unit(x, width * 2**stage, strides, bottleneck)

    # Pre-activation networks end with a last BN -> ReLU before pooling.
    x = _bn_relu(x)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")
