"""Model builders, chosen by name.

Each builder is a small function ``build_<name>(input_shape, num_classes, **options)`` in its
own module that returns an uncompiled ``keras.Model`` taking images already scaled to [0, 1].
Two classes get one sigmoid unit, more get a softmax. ``build_classifier`` wraps a builder with
what every trained model carries: rescaling from raw 0-255 pixels (or per-channel
standardisation from the training split) and the training-only augmentation, so a saved model
takes raw images.

    model = build_classifier("mini_xception", (180, 180, 3), 2, augmentation={"zoom": 0.2})
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from image_classifiers.layers import RandomAugment
from image_classifiers.models.alexnet import build_alexnet
from image_classifiers.models.auxiliary import AuxiliaryHeadsModel
from image_classifiers.models.blocks import classifier_head
from image_classifiers.models.googlenet import build_googlenet
from image_classifiers.models.lenet import build_lenet
from image_classifiers.models.mini_xception import build_mini_xception
from image_classifiers.models.residual_convnet import build_residual_convnet
from image_classifiers.models.resnet import build_resnet
from image_classifiers.models.simple_convnet import build_simple_convnet
from image_classifiers.models.small_cnn import build_small_cnn
from image_classifiers.models.vgg16 import build_vgg16
from image_classifiers.models.vgg_cifar import build_vgg_cifar

__all__ = [
    "ARCHITECTURES",
    "AuxiliaryHeadsModel",
    "architecture_options",
    "build_backbone",
    "build_classifier",
    "channel_moments",
    "classifier_head",
    "load_model_file",
]

#: How ``build_classifier`` brings raw 0-255 pixels to the network (the ``normalization``
#: model option).
NORMALIZATIONS = ("rescale", "standardize")

ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "alexnet": build_alexnet,
    "googlenet": build_googlenet,
    "lenet": build_lenet,
    "mini_xception": build_mini_xception,
    "residual_convnet": build_residual_convnet,
    "resnet": build_resnet,
    "simple_convnet": build_simple_convnet,
    "small_cnn": build_small_cnn,
    "vgg16": build_vgg16,
    "vgg_cifar": build_vgg_cifar,
}


def load_model_file(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` file saved by this project, whatever the backend.

    The project's custom objects (``RandomAugment``, ``AuxiliaryHeadsModel``, transfer
    learning's preprocessing and inference-mode base) are registered with Keras when their
    modules are imported, and Keras never imports a module a file names (a safety rule), so
    they are imported here first. Needs Keras and this package only (no Kedro), so that the
    serving model loads in the slim environment ``mlflow models serve`` builds.
    """
    import image_classifiers.models.transfer  # noqa: F401  (registers its layers)

    return keras.saving.load_model(path, compile=compile)


def architecture_options(architecture: str) -> dict[str, Any]:
    """The options ``architecture`` accepts, with their defaults."""
    _check_architecture(architecture)
    parameters = list(inspect.signature(ARCHITECTURES[architecture]).parameters.values())
    # The first two are input_shape and num_classes.
    return {p.name: p.default for p in parameters[2:]}


def build_backbone(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> keras.Model:
    """Build the bare network named ``architecture`` (inputs scaled to [0, 1]).

    Args:
        architecture: A key of ``ARCHITECTURES``.
        input_shape: ``(height, width, channels)``.
        num_classes: Number of classes, at least 2.
        **options: The builder's keyword options (see ``architecture_options``).

    Raises:
        ValueError: If ``architecture`` is unknown, an option is unknown or bad, or the
            network cannot be built for ``input_shape``.
    """
    accepted = architecture_options(architecture)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) for architecture '{architecture}': {', '.join(unknown)}. "
            f"It accepts: {', '.join(accepted) or 'no options'}."
        )
    input_shape = _check_input_shape(input_shape)
    if not _is_integer(num_classes) or num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes!r}.")
    num_classes = operator.index(num_classes)
    try:
        return ARCHITECTURES[architecture](input_shape, num_classes, **options)
    except (TypeError, ValueError) as exc:
        # Keras' own messages (e.g. a feature map shrinking below 1x1) lack this context.
        raise ValueError(
            f"Cannot build '{architecture}' for input shape {input_shape} with options "
            f"{options}: {exc}"
        ) from exc


def build_classifier(
    architecture: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    augmentation: dict[str, Any] | None = None,
    *,
    normalization: str = "rescale",
    train_images: np.ndarray | None = None,
    **options: Any,
) -> keras.Model:
    """Raw 0-255 images -> normalise and augment (training only) -> ``architecture``.

    Args:
        architecture: A key of ``ARCHITECTURES``.
        input_shape: ``(height, width, channels)`` of the raw images.
        num_classes: Number of classes, at least 2.
        augmentation: ``RandomAugment`` keyword arguments; ``None`` or empty for none.
        normalization: ``rescale`` (to [0, 1], then augment) or ``standardize`` (augment
            the raw pixels, then subtract each channel's mean and divide by its standard
            deviation over ``train_images``; a ``keras.layers.Normalization`` holding them,
            so the saved model still takes raw pixels).
        train_images: The training split's raw images; needed for ``standardize``.
        **options: The builder's keyword options.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}."
        )
    backbone = build_backbone(architecture, input_shape, num_classes, **options)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if normalization == "rescale":
        x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        if augmentation:
            x = _augmentation_layer(augmentation)(x)
    else:
        if train_images is None or len(train_images) == 0:
            raise ValueError("normalization 'standardize' needs the training images.")
        # Augmented first, in raw pixels (contrast and brightness clip to 0-255), so the
        # standardised values reach the network unclipped.
        x = inputs
        if augmentation:
            x = _augmentation_layer({"value_range": (0, 255), **augmentation})(x)
        mean, variance = channel_moments(train_images)
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name="standardize")(x)
    if isinstance(backbone, AuxiliaryHeadsModel):
        # Keep the auxiliary heads' training-only behaviour at the outermost model.
        network = keras.Model(inputs, backbone.network(x), name=f"{architecture}_network")
        return AuxiliaryHeadsModel(network, aux_weight=backbone.aux_weight, name=architecture)
    return keras.Model(inputs, backbone(x), name=architecture)


def channel_moments(images: np.ndarray, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of ``(N, H, W, C)`` images, in chunks (memory-mapped
    splits need not fit in RAM as float)."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk], dtype=np.float64).reshape(-1, channels)
        total += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
    count = images.size / channels
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 0.0)
    return mean.tolist(), variance.tolist()


def _augmentation_layer(augmentation: dict[str, Any]) -> RandomAugment:
    accepted = [
        name
        for name, parameter in inspect.signature(RandomAugment.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(augmentation) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown augmentation option(s): {', '.join(unknown)}. "
            f"Accepted: {', '.join(accepted)}."
        )
    return RandomAugment(**augmentation, name="augment")


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture '{architecture}'. "
            f"Choose one of: {', '.join(sorted(ARCHITECTURES))}."
        )


def _is_integer(value: Any) -> bool:
    """True for Python and NumPy integers (not bools, not floats)."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


def _check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(_is_integer(d) and d > 0 for d in shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive integers, got {shape}."
        )
    return tuple(operator.index(d) for d in shape)
