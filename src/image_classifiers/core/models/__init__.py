"""Model builders by name: ``build_<name>(input_shape, num_classes, **options)`` takes [0, 1]
images; ``build_classifier`` puts normalisation and augmentation in front, so a saved model
takes raw 0-255 images, as keras-io advises."""

import operator
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from image_classifiers.core.layers import RandomAugment
from image_classifiers.core.models.alexnet import build_alexnet
from image_classifiers.core.models.auxiliary import AuxiliaryHeadsModel
from image_classifiers.core.models.googlenet import build_googlenet
from image_classifiers.core.models.lenet import build_lenet, build_small_cnn
from image_classifiers.core.models.mini_xception import build_mini_xception
from image_classifiers.core.models.residual_convnet import build_residual_convnet
from image_classifiers.core.models.resnet import build_resnet
from image_classifiers.core.models.simple_convnet import build_simple_convnet
from image_classifiers.core.models.vgg16 import build_vgg16
from image_classifiers.core.models.vgg_cifar import build_vgg_cifar

NORMALIZATIONS = ("rescale", "standardize")

ARCHITECTURES = {
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


class ModelFileError(ValueError):
    """No model file at a path, or one that is no ``.keras`` file (the message says which)."""


def load_model_file(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a project ``.keras`` file without Kedro; Keras never imports its custom layers."""
    import image_classifiers.core.models.transfer  # noqa: F401  (registers its layers)

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(
            f"No model file at '{path}'. Give a .keras file or a registry URI such as "
            "models:/cats_vs_dogs@champion, or train one first (kedro run)."
        )
    if not zipfile.is_zipfile(path):  # Keras says "File not found" for any other file
        with path.open("rb") as file:
            start = file.read(16)
        raise ModelFileError(
            f"'{path}' is not a Keras model file (a .keras file is a zip archive; this one "
            f"starts with {start!r}). Give the .keras file that model.save() wrote."
        )
    return keras.saving.load_model(path, compile=compile)


def build_backbone(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> keras.Model:
    """The bare network ``architecture`` (inputs in [0, 1]); ValueError for bad arguments."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture '{architecture}'. "
            f"Choose one of: {', '.join(sorted(ARCHITECTURES))}."
        )
    try:  # NumPy integers welcome, floats and bools not
        shape = tuple(operator.index(d) for d in input_shape if not isinstance(d, bool))
        classes = operator.index(num_classes)
    except TypeError:
        shape, classes = (), num_classes
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive integers, got "
            f"{tuple(input_shape)}."
        )
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes!r}.")
    try:
        return ARCHITECTURES[architecture](shape, classes, **options)
    except (TypeError, ValueError) as exc:  # Keras' messages lack the context
        raise ValueError(
            f"Cannot build '{architecture}' for input shape {shape} with options {options}: {exc}"
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
    """Raw 0-255 images -> normalise and augment (training only) -> ``architecture``."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}."
        )
    backbone = build_backbone(architecture, input_shape, num_classes, **options)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if normalization == "rescale":
        x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        if augmentation:
            x = augmentation_layer(augmentation)(x)
    else:
        if train_images is None or len(train_images) == 0:
            raise ValueError("normalization 'standardize' needs the training images.")
        # Augment raw pixels (clipped to 0-255) first, so standardised values stay unclipped.
        x = augmentation_layer(augmentation, (0, 255))(inputs) if augmentation else inputs
        mean, variance = channel_moments(train_images)
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name="standardize")(x)
    if isinstance(backbone, AuxiliaryHeadsModel):
        # The heads' training-only behaviour belongs to the outermost model.
        network = keras.Model(inputs, backbone.network(x), name=f"{architecture}_network")
        return AuxiliaryHeadsModel(network, aux_weight=backbone.aux_weight, name=architecture)
    return keras.Model(inputs, backbone(x), name=architecture)


def augmentation_layer(augmentation: dict[str, Any], value_range=None) -> RandomAugment:
    """``RandomAugment(**augmentation)``, on ``value_range`` pixels if given."""
    if value_range:
        augmentation = {"value_range": value_range, **augmentation}
    return RandomAugment(**augmentation, name="augment")


def channel_moments(images: np.ndarray, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance, in chunks: a memory-mapped split need not fit in RAM."""
    channels = images.shape[-1]
    total, squares = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk], dtype=np.float64).reshape(-1, channels)
        total += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
    count = images.size / channels
    mean = total / count
    return mean.tolist(), np.maximum(squares / count - np.square(mean), 0.0).tolist()
