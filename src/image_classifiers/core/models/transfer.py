"""Transfer learning from a ``keras.applications`` base pretrained on ImageNet, on raw 0-255 RGB.

``base(x, training=False)`` is not enough in Keras 3 (hence ``InferenceMode``): ``fit``'s
outer ``training=True`` overrides it, and the base's dropout (drop-connect) would be active."""

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self

import keras
import numpy as np

from image_classifiers.core.models.blocks import classifier_head

logger = logging.getLogger(__name__)

POOLINGS = {
    "flatten": keras.layers.Flatten,
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
}


@dataclass(frozen=True)
class BaseSpec:
    """A base and its no-top ImageNet weights file (``{size}``: the input size) and folder."""

    constructor: Callable[..., keras.Model]
    preprocess: Callable[[Any], Any]
    min_size: int
    weights_file: str
    weights_folder: str

    def weights_file_for(self, input_shape: tuple[int, ...]) -> str:
        height, width = input_shape[:2]
        # MobileNetV2 has weights for these square sizes and falls back to the 224 ones.
        size = height if height == width and height in (96, 128, 160, 192, 224) else 224
        return self.weights_file.format(size=size)


_apps = keras.applications
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
BASES: dict[str, BaseSpec] = {
    "vgg16": BaseSpec(
        _apps.VGG16, _apps.vgg16.preprocess_input, 32, f"vgg16{_NOTOP}", _KERAS + "vgg16/"
    ),
    "xception": BaseSpec(
        _apps.Xception,
        _apps.xception.preprocess_input,
        71,
        f"xception{_NOTOP}",
        _KERAS + "xception/",
    ),
    "resnet50": BaseSpec(
        _apps.ResNet50, _apps.resnet50.preprocess_input, 32, f"resnet50{_NOTOP}", _KERAS + "resnet/"
    ),
    "mobilenet_v2": BaseSpec(
        _apps.MobileNetV2,
        _apps.mobilenet_v2.preprocess_input,
        32,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        _KERAS + "mobilenet_v2/",
    ),
    # EfficientNet's preprocess_input is a no-op: the network rescales and normalises itself.
    "efficientnet_b0": BaseSpec(
        _apps.EfficientNetB0,
        _apps.efficientnet.preprocess_input,
        32,
        "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
    ),
}

# EfficientNet's ImageNet weights hold the standard deviation where its Normalization expects a
# variance; Keras corrects it for weights="imagenet" only (tensorflow/tensorflow#49930).
_IMAGENET_STDDEV_RGB = np.array([0.229, 0.224, 0.225], dtype="float32")


class WeightsError(ValueError):
    """The pretrained weights asked for can't be downloaded, found or loaded."""


@keras.saving.register_keras_serializable(package="image_classifiers")
class ApplicationPreprocessing(keras.layers.Layer):
    """The base's ``preprocess_input`` as a layer, so a saved model needs no preprocessing."""

    def __init__(self, base: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.base = base

    def call(self, inputs: Any) -> Any:
        # preprocess_input works in place (x /= 127.5): never on the caller's tensor.
        images = keras.ops.copy(keras.ops.cast(inputs, self.compute_dtype))
        return BASES[self.base].preprocess(images)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "base": self.base}


@keras.saving.register_keras_serializable(package="image_classifiers")
class InferenceMode(keras.layers.Layer):
    """Calls the wrapped layer with ``training=False`` always (``call`` takes no ``training``)."""

    def __init__(self, layer: keras.layers.Layer, **kwargs: Any):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs: Any) -> Any:
        return self.layer(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("layer")), **config)


def load_base(
    base: str, input_shape: tuple[int, ...], weights: str | None = "imagenet"
) -> keras.Model:
    """The trainable no-top base: ``"imagenet"`` weights, a no-top ``.h5`` file's, or None."""
    if base not in BASES:
        raise ValueError(f"Unknown transfer.base '{base}'. Choose one of: {', '.join(BASES)}.")
    spec = BASES[base]
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"transfer.base '{base}' takes RGB images (height, width, 3), got {input_shape}."
        )
    if min(input_shape[:2]) < spec.min_size:
        raise ValueError(
            f"transfer.base '{base}' needs images of at least {spec.min_size}x{spec.min_size} "
            f"pixels, got {input_shape[0]}x{input_shape[1]}: decode larger images "
            "(decode.image_size) or choose another base."
        )
    build = partial(spec.constructor, include_top=False, input_shape=input_shape)
    file_name = spec.weights_file_for(input_shape)
    hint = (
        f"To work offline, download Keras' no-top ImageNet weights for '{base}' on a machine "
        f"with network access ({spec.weights_folder}{file_name}), copy the file here and run "
        f'with --params="transfer.weights=/path/to/{file_name}" (or put it in '
        "~/.keras/models/, where weights: imagenet looks first). "
        "Use transfer.weights=null to start from random weights."
    )
    if weights is None:
        return build(weights=None)
    if weights == "imagenet":
        try:
            return build(weights="imagenet")
        except Exception as exc:  # Keras raises a bare Exception for a failed download
            logger.debug("Getting the ImageNet weights failed.", exc_info=True)
            raise WeightsError(
                f"Could not get the ImageNet weights for transfer.base '{base}': {exc} "
                f"(no network access?). {hint}"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"transfer.weights: no file at '{path}'. {hint}")
    if path.suffix != ".h5":
        raise WeightsError(
            f"transfer.weights '{path}' is not a Keras weights file (.h5 or .weights.h5). {hint}"
        )
    model = build(weights=None)
    try:
        # Keras only warns about parts it can't match: a partly loaded base is an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model.load_weights(path)
    except Exception as exc:  # h5py, shape and layer-count errors alike: wrong file
        logger.debug("Loading %s failed.", path, exc_info=True)
        raise WeightsError(
            f"transfer.weights '{path}' doesn't fit transfer.base '{base}' without its top "
            f"at input shape {input_shape}: {exc}. Use the no-top weights "
            f"({file_name}), not the full classifier's. {hint}"
        ) from None
    if base.startswith("efficientnet"):
        _correct_efficientnet_normalization(model)
    logger.info("Loaded the weights of base '%s' from %s.", base, path)
    return model


def _correct_efficientnet_normalization(model: keras.Model) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and hasattr(layer, "adapt_variance"):
            variance = keras.ops.convert_to_numpy(layer.adapt_variance)
            # Only Keras' ImageNet statistics carry the standard deviation as variance.
            if np.allclose(variance, _IMAGENET_STDDEV_RGB, atol=1e-4):
                layer.adapt_variance.assign(variance * _IMAGENET_STDDEV_RGB)
                layer.finalize_state()
                logger.info("Applied Keras' EfficientNet ImageNet normalisation correction.")
            return


def build_transfer_model(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    base: str = "vgg16",
    weights: str | None = "imagenet",
    pooling: str = "flatten",
    dense_units: int | None = 256,
    batch_norm: bool = False,
    dropout: float = 0.5,
    augmentation: dict[str, Any] | None = None,
) -> keras.Model:
    """A classifier ``transfer_<base>`` on the frozen base; options: ``params.TransferParams``'."""
    from image_classifiers.core.models import augmentation_layer

    pretrained = load_base(base, input_shape, weights)

    inputs = keras.Input(shape=pretrained.input_shape[1:], name="image")
    x = augmentation_layer(augmentation, (0, 255))(inputs) if augmentation else inputs
    # float32 even under mixed precision: bfloat16 would round the mean-subtracted pixels.
    x = ApplicationPreprocessing(base, name="preprocess", dtype="float32")(x)
    x = InferenceMode(pretrained, name="pretrained_base")(x)
    x = POOLINGS[pooling](name=f"{pooling}_pool" if pooling != "flatten" else "flatten")(x)
    if dense_units:
        x = keras.layers.Dense(int(dense_units), use_bias=not batch_norm, name="dense")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name="dense_bn")(x)
        x = keras.layers.Activation("relu", name="dense_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    model = keras.Model(inputs, classifier_head(num_classes)(x), name=f"transfer_{base}")
    freeze_base(model)
    return model


def _wrapper(model: keras.Model) -> InferenceMode:
    for layer in model.layers:
        if isinstance(layer, InferenceMode):
            return layer
    raise ValueError(
        f"Model '{model.name}' has no pretrained base: build it with build_transfer_model."
    )


def pretrained_base(model: keras.Model) -> keras.Model:
    """The pretrained base inside a model built by ``build_transfer_model``."""
    return _wrapper(model).layer


def freeze_base(model: keras.Model) -> None:
    """Freeze the whole pretrained base (feature extraction); the head stays trainable."""
    _wrapper(model).trainable = False


def unfreeze_top_layers(model: keras.Model, top_k: int) -> list[str]:
    """Unfreeze the base's last ``top_k`` non-BatchNormalization layers, with or without
    weights as in the reference (VGG16's "last 4" include block5_pool); their names."""
    base = pretrained_base(model)
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    candidates = [
        layer for layer in layers if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= len(candidates):
        raise ValueError(
            f"transfer.fine_tuning.unfreeze_top_k must be an integer in [0, {len(candidates)}] "
            f"for base '{base.name}' ({len(candidates)} layers besides BatchNormalization), "
            f"got {top_k!r}."
        )
    # Setting the wrapper trainable unfreezes everything, so every layer is set after it.
    _wrapper(model).trainable = True
    unfrozen = candidates[len(candidates) - top_k :] if top_k else []
    for layer in layers:
        layer.trainable = any(layer is chosen for chosen in unfrozen)
    names = [layer.name for layer in unfrozen]
    logger.info("Unfroze the top %d layers of base '%s': %s.", top_k, base.name, names)
    return names
