"""VGG16 (Simonyan & Zisserman, 2015), configuration D, trained from scratch.

134,301,514 parameters at 224x224x3 with 10 classes: thirteen 3x3 convolutions in five
stages, each closed by a 2x2 pool, then two 4096-wide dense layers and the classifier. The
five pools need images of at least 32x32.
"""

from __future__ import annotations

import keras
from keras import layers

from image_classifiers.models.blocks import classifier_head

# (width, convolutions) of the five stages of configuration D.
STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def build_vgg16(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dense_units: int = 4096,
    dropout: float = 0.5,
) -> keras.Model:
    """Build VGG16.

    Args:
        input_shape: ``(height, width, channels)`` of images scaled to [0, 1].
        num_classes: Number of classes.
        dense_units: Width of the two hidden dense layers.
        dropout: Dropout rate after each hidden dense layer (as in the paper).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for stage, (width, convolutions) in enumerate(STAGES, start=1):
        for i in range(1, convolutions + 1):
            x = layers.Conv2D(
                width, 3, padding="same", activation="relu", name=f"block{stage}_conv{i}"
            )(x)
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)

    # Classifier: two hidden dense layers with dropout.
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(dense_units, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name="vgg16")
