"""Feature maps and Grad-CAM heatmaps (Selvaraju et al., 2017), on any Keras backend.
``tapped_model`` rebuilds the graph with ``clone_model``, nested models inlined, so any inner
layer's output can be an output. The gradient at an inner tensor is taken at a zero tensor
added to it (``Perturbation``); the score is the logit, as a saturated softmax has none.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from image_classifiers.core.models import AuxiliaryHeadsModel
from image_classifiers.core.models.transfer import InferenceMode

logger = logging.getLogger(__name__)

CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
_POOLINGS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def _inner_model(layer: keras.layers.Layer) -> keras.Model | None:
    if isinstance(layer, InferenceMode):
        layer = layer.layer
    if isinstance(layer, AuxiliaryHeadsModel):
        layer = layer.network
    if isinstance(layer, keras.Model):
        if not isinstance(layer, keras.Function):  # a subclassed model: opaque
            raise ValueError(
                f"Cannot look inside '{layer.name}' ({type(layer).__name__}): only functional "
                "models (and models nesting them) can be inspected."
            )
        return layer
    return None


def _main_path_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers the main output depends on, nested models' ones included, in graph order."""

    def walk(container: keras.Model) -> Iterator[keras.layers.Layer]:
        # Rebuilt on the main output alone: auxiliary heads (GoogLeNet's) drop out.
        for layer in keras.Model(container.inputs, container.outputs[0]).layers:
            inner = _inner_model(layer)
            if inner is not None:
                yield from walk(inner)
            elif not isinstance(layer, keras.layers.InputLayer):
                yield layer

    return list(walk(_top_model(model)))


def _top_model(model: keras.Model) -> keras.Model:
    if (top := _inner_model(model)) is None:
        raise ValueError(f"'{model.name}' is a single layer, not a model.")
    return top


def convolution_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every 2D convolution the prediction of ``model`` depends on, in graph order."""
    return [layer for layer in _main_path_layers(model) if isinstance(layer, CONVOLUTIONS)]


def last_feature_map_layer(model: keras.Model) -> keras.layers.Layer:
    """Grad-CAM's default: the last 4-D output after the first convolution, pooling aside."""
    layers = _main_path_layers(model)
    first = next((i for i, layer in enumerate(layers) if isinstance(layer, CONVOLUTIONS)), None)
    if first is None:
        raise ValueError(f"Model '{model.name}' has no convolution layer to look inside.")
    return [
        layer
        for layer in layers[first:]
        if len(layer.output.shape) == 4 and not isinstance(layer, _POOLINGS)
    ][-1]


def _logits(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A softmax/sigmoid Dense head's linear copy (same weights); any other layer itself."""
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if not isinstance(layer, keras.layers.Dense) or activation not in ("softmax", "sigmoid"):
        return layer
    copy = type(layer).from_config({**layer.get_config(), "activation": "linear"})
    copy.build((None, layer.kernel.shape[0]))
    copy.set_weights(layer.get_weights())
    return copy


class Perturbation(keras.layers.Layer):
    """Adds ``self.delta`` (set just before a call): an extra model input would dangle, as
    ``clone_model`` rebuilds each nested model from its own inputs."""

    delta: Any = None

    def call(self, inputs: Any) -> Any:
        return inputs if self.delta is None else inputs + self.delta


def tapped_model(
    model: keras.Model,
    taps: list[keras.layers.Layer],
    *,
    perturbation: Perturbation | None = None,
    logits: bool = False,
) -> keras.Model:
    """``[main output, *outputs of taps]`` on ``model``'s layers; ``perturbation`` is added
    to the last tap's output, ``logits`` makes softmax/sigmoid heads linear."""
    wanted = {id(layer) for layer in taps}

    def rebuild(functional: keras.Model) -> tuple[keras.Model, list[keras.layers.Layer]]:
        captured: list[tuple[keras.layers.Layer, Any]] = []

        def call(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
            inner = _inner_model(layer)
            if inner is not None:
                # A nested model is rebuilt too, its taps becoming extra outputs of it.
                nested, nested_taps = rebuild(inner)
                outputs = nested(args[0])
                count = len(inner.outputs)
                captured.extend(zip(nested_taps, outputs[count:], strict=True))
                # A wrapper (InferenceMode, AuxiliaryHeadsModel) returns the main output only.
                return outputs[0] if count == 1 or inner is not layer else outputs[:count]
            outputs = layer(*args, **kwargs)
            if id(layer) in wanted:
                captured.append((layer, outputs))
                if perturbation is not None and layer is taps[-1]:
                    outputs = perturbation(outputs)
            return outputs

        keep = _logits if logits else lambda layer: layer
        new = keras.models.clone_model(functional, clone_function=keep, call_function=call)
        outputs = [*new.outputs, *(tensor for _, tensor in captured)]
        return keras.Model(new.input, outputs), [layer for layer, _ in captured]

    top = _top_model(model)
    network, found = rebuild(top)
    missing = [layer.name for layer in taps if layer not in found]
    if missing:
        raise ValueError(f"Layer(s) {missing} are not part of model '{model.name}'.")
    count = len(top.outputs)
    # The main output (an AuxiliaryHeadsModel's first), then the taps in the order asked.
    order = [count + found.index(layer) for layer in taps]
    return keras.Model(network.input, [network.outputs[0], *(network.outputs[i] for i in order)])


def _gradient(fn: Callable[[Any], tuple[Any, Any]], x: Any) -> tuple[np.ndarray, Any]:
    """The gradient of scalar ``fn(x)[0]`` at ``x``, and ``fn(x)[1]``: ``keras.ops`` has none."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad, aux = jax.grad(fn, has_aux=True)(x)
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            value, aux = fn(x)
        grad = tape.gradient(value, x)
    elif backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        value, aux = fn(x)
        (grad,) = torch.autograd.grad(value, x)
    else:
        raise ValueError(f"Grad-CAM needs gradients, which Keras' '{backend}' backend lacks.")
    return keras.ops.convert_to_numpy(grad), aux


def _class_scores(logits: Any, classes: np.ndarray) -> Any:
    """The logit of ``classes[i]`` for each image; one sigmoid unit is class 1's logit."""
    if logits.shape[-1] == 1:
        sign = keras.ops.convert_to_tensor(np.where(classes == 1, 1.0, -1.0).astype("float32"))
        return logits[:, 0] * sign
    one_hot = keras.ops.one_hot(keras.ops.convert_to_tensor(classes), logits.shape[-1])
    return keras.ops.sum(logits * one_hot, axis=-1)


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    classes: np.ndarray | None = None,
    *,
    layer: keras.layers.Layer | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM heatmaps ``(N, height, width)``, each peaking at 1 (or all 0), for ``classes``
    (default: the predicted ones) at ``layer`` (default: ``last_feature_map_layer``)."""
    if layer is None:
        layer = last_feature_map_layer(model)
    perturbation = Perturbation(name="grad_cam_perturbation")
    network = tapped_model(model, [layer], perturbation=perturbation, logits=True)
    images = np.asarray(images)
    maps = []
    for start in range(0, len(images), max(1, int(batch_size))):
        batch = keras.ops.convert_to_tensor(images[start : start + batch_size], "float32")
        logits, features = network(batch, training=False)
        if classes is None:  # the predicted class
            logits = keras.ops.convert_to_numpy(logits)
            wanted = (logits[:, 0] > 0) if logits.shape[-1] == 1 else logits.argmax(-1)
        else:
            wanted = np.asarray(classes[start : start + batch_size])
        wanted = wanted.astype("int32")

        def score(delta: Any, batch: Any = batch, wanted: np.ndarray = wanted) -> Any:
            perturbation.delta = delta
            try:
                logits, features = network(batch, training=False)
            finally:
                perturbation.delta = None
            # Independent images: the gradient of the sum holds each image's own.
            return keras.ops.sum(_class_scores(logits, wanted)), features

        zeros = keras.ops.zeros(features.shape, dtype="float32")
        gradients, features = _gradient(score, zeros)
        features = keras.ops.convert_to_numpy(features).astype("float32")
        weights = gradients.mean(axis=(1, 2))  # one per channel
        maps.append(np.maximum(np.einsum("bhwc,bc->bhw", features, weights), 0))
    heat = np.concatenate(maps) if maps else np.zeros((0, 1, 1), "float32")
    peak = heat.max(axis=(1, 2), keepdims=True)
    heat = np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0)
    resized = keras.ops.image.resize(heat[..., None], images.shape[1:3], interpolation="bilinear")
    return np.clip(keras.ops.convert_to_numpy(resized)[..., 0], 0, 1).astype("float32")


def feature_maps(
    model: keras.Model, image: np.ndarray, *, layers: int = 4
) -> list[tuple[str, np.ndarray]]:
    """``(layer name, HWC output)`` of the first ``layers`` convolutions for one raw image."""
    convolutions = convolution_layers(model)[: max(1, int(layers))]
    if not convolutions:
        raise ValueError(f"Model '{model.name}' has no convolution layer to show.")
    network = tapped_model(model, convolutions)
    batch = keras.ops.convert_to_tensor(np.asarray(image)[None], "float32")
    outputs = network(batch, training=False)[1:]
    return [
        (layer.name, keras.ops.convert_to_numpy(output)[0].astype("float32"))
        for layer, output in zip(convolutions, outputs, strict=True)
    ]
