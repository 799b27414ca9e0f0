"""A VGG-style CNN for CIFAR-10 with the over-fitting remedies as options: 550,570 parameters
at 32x32x3 with 10 classes; with ``batch_norm`` 552,298 (551,146 trainable: no biases, 4 BN
weights per channel, 2 trainable)."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head


def build_vgg_cifar(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: tuple[int, ...] = (32, 64, 128),
    dense_units: int = 128,
    l2: float = 0.0,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> keras.Model:
    """Blocks of two 3x3 convolutions and a pool, a dense layer; BN before each ReLU."""
    if l2 < 0 or not 0 <= dropout < 1:
        raise ValueError(f"l2 must be >= 0 and dropout in [0, 1), got {l2} and {dropout}.")
    regularizer = keras.regularizers.L2(l2) if l2 else None

    def normalized_relu(layer, x):
        x = layer(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x) if batch_norm else x)

    def weights(**kwargs):
        return {"use_bias": not batch_norm, "kernel_initializer": "he_uniform",
                "kernel_regularizer": regularizer, **kwargs}  # fmt: skip

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in filters:
        for _ in range(2):
            x = normalized_relu(layers.Conv2D(width, 3, **weights(padding="same")), x)
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    x = normalized_relu(layers.Dense(dense_units, **weights()), layers.Flatten()(x))
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(num_classes)(x), name="vgg_cifar")
