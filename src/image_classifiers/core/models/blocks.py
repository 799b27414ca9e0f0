"""Pieces several builders share: the classification head, convolution, BN and ReLU."""

import keras
from keras import layers


def classifier_head(num_classes: int, name: str = "predictions") -> keras.layers.Dense:
    """One sigmoid unit for two classes, else a softmax; float32, as bfloat16 probabilities
    near 0 or 1 make the cross-entropy unstable."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name=name, dtype="float32")
    return layers.Dense(num_classes, activation="softmax", name=name, dtype="float32")


def conv(x, width: int, kernel: int, strides: int = 1):
    """Conv2D, "same", without a bias: a BatchNormalization (or a sum feeding one) follows."""
    return layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False)(x)


def bn_relu(x):
    return layers.Activation("relu")(layers.BatchNormalization()(x))


def conv_bn_relu(x, width: int, kernel: int, strides: int = 1):
    return bn_relu(conv(x, width, kernel, strides))
