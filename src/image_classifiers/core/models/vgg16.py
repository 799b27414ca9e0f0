"""VGG16 (Simonyan & Zisserman, 2015), configuration D, from scratch: 134,301,514 parameters
at 224x224x3 with 10 classes; the five pools need 32x32 images."""

import keras
from keras import layers

from image_classifiers.core.models.blocks import classifier_head

STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (width, convolutions)


def build_vgg16(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dense_units: int = 4096,
    dropout: float = 0.5,
) -> keras.Model:
    """Thirteen 3x3 convolutions in five pooled stages, two dense layers with dropout."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for stage, (width, convolutions) in enumerate(STAGES, start=1):
        for i in range(1, convolutions + 1):
            name = f"block{stage}_conv{i}"
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=name)(x)
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dropout(dropout)(layers.Dense(dense_units, activation="relu", name=f"fc{i}")(x))
    return keras.Model(inputs, classifier_head(num_classes)(x), name="vgg16")
