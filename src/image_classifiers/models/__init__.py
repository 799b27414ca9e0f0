"""Model builders, chosen by name.

Each builder is a small function ``build_<name>(input_shape, num_classes, **options)`` that
returns an uncompiled ``keras.Model`` taking images already scaled to [0, 1]. Two classes get
one sigmoid unit, more get a softmax. ``build_classifier`` wraps a builder with what every
trained model carries: rescaling from raw 0-255 pixels and the training-only augmentation, so
a saved model takes raw images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from image_classifiers.layers import RandomAugment
from image_classifiers.models.simple_convnet import build_simple_convnet

ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "simple_convnet": build_simple_convnet,
}


def build_backbone(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> keras.Model:
    """Build the bare network named ``architecture`` (inputs scaled to [0, 1]).

    Raises:
        ValueError: If ``architecture`` is unknown or the options don't fit the builder.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture '{architecture}'. Choose one of: {', '.join(sorted(ARCHITECTURES))}."
        )
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes}.")
    try:
        return ARCHITECTURES[architecture](tuple(input_shape), num_classes, **options)
    except TypeError as exc:
        raise ValueError(f"Bad options for architecture '{architecture}': {exc}") from exc


def build_classifier(
    architecture: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    augmentation: dict[str, Any] | None = None,
    **options: Any,
) -> keras.Model:
    """Raw 0-255 images -> rescale -> augment (training only) -> ``architecture``."""
    backbone = build_backbone(architecture, input_shape, num_classes, **options)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if augmentation:
        x = RandomAugment(**augmentation, name="augment")(x)
    outputs = backbone(x)
    return keras.Model(inputs, outputs, name=architecture)


def classifier_head(num_classes: int, name: str = "predictions") -> keras.layers.Dense:
    """One sigmoid unit for two classes, a softmax over ``num_classes`` otherwise."""
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name=name)
    return keras.layers.Dense(num_classes, activation="softmax", name=name)
