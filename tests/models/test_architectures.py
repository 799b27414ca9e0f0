"""The architecture zoo: reference parameter counts, output shapes, options and errors."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from image_classifiers.core.layers import RandomAugment
from image_classifiers.core.models import (
    ARCHITECTURES,
    AuxiliaryHeadsModel,
    build_backbone,
    build_classifier,
)

# Options that make the deep ImageNet-style networks keep some resolution on 32x32 images.
SMALL_INPUT_OPTIONS = {
    "alexnet": {"stem_strides": 1},
    "googlenet": {"stem_strides": 1},
    "resnet": {"stem_kernel": 3, "stem_strides": 1, "stem_pool": False},
}


def count_trainable(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


@pytest.mark.parametrize(
    ("architecture", "input_shape", "num_classes", "total", "trainable"),
    [
        ("mini_xception", (180, 180, 3), 2, 721_857, 718_849),
        ("residual_convnet", (32, 32, 3), 2, 297_697, 297_697),
        ("lenet", (28, 28, 1), 10, 431_080, 431_080),
        ("simple_convnet", (180, 180, 3), 2, 991_041, 991_041),
        ("vgg16", (224, 224, 3), 10, 134_301_514, 134_301_514),
        # 320 + 18,496 (convs) + 204,928 (5x5x64 -> 128) + 1,290 (head).
        ("small_cnn", (28, 28, 1), 10, 225_034, 225_034),
        # 896 + 9,248 + 18,496 + 36,928 + 73,856 + 147,584 (convs) + 262,272 + 1,290.
        ("vgg_cifar", (32, 32, 3), 10, 550_570, 550_570),
    ],
)
def test_reference_parameter_counts(architecture, input_shape, num_classes, total, trainable):
    model = build_backbone(architecture, input_shape, num_classes)
    assert model.count_params() == total
    assert count_trainable(model) == trainable


@pytest.mark.parametrize(
    ("options", "total", "trainable", "regularised"),
    [
        ({"l2": 1e-3}, 550_570, 550_570, 7),
        ({"dropout": 0.2}, 550_570, 550_570, 0),
        # 576 biases (6 convs, the dense layer) give way to 4 BN weights per channel, 2 trainable.
        ({"batch_norm": True}, 552_298, 551_146, 0),
    ],
)
def test_vgg_cifar_overfitting_variants(options, total, trainable, regularised):
    model = build_backbone("vgg_cifar", (32, 32, 3), 10, **options)
    assert model.count_params() == total
    assert count_trainable(model) == trainable
    penalised = [layer for layer in model.layers if getattr(layer, "kernel_regularizer", None)]
    assert len(penalised) == regularised
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == (4 if "dropout" in options else 0)  # after each block, before head
    # The penalty counts in the loss: 7 kernels' squared norms, scaled.
    if regularised:
        assert len(model.losses) == regularised


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize(
    ("num_classes", "small_input_options"), [(2, True), (10, False)], ids=["2", "10"]
)
def test_output_shapes_and_probabilities(architecture, num_classes, small_input_options):
    """Every network runs on small images, with its small-input options and without."""
    input_shape = (28, 28, 1) if architecture == "lenet" else (32, 32, 3)
    if architecture == "simple_convnet":
        input_shape = (80, 80, 3)  # its unpadded layers need at least 78x78
    options = SMALL_INPUT_OPTIONS.get(architecture, {}) if small_input_options else {}
    if architecture in ("alexnet", "vgg16"):
        # Shapes don't depend on the dense width; 4096-wide layers take seconds to initialise.
        options = {**options, "dense_units": 256}
    model = build_backbone(architecture, input_shape, num_classes, **options)
    images = np.random.default_rng(0).random((2, *input_shape), dtype="float32")
    predictions = keras.ops.convert_to_numpy(model(images))
    if num_classes == 2:
        assert predictions.shape == (2, 1)
        assert np.all((predictions >= 0) & (predictions <= 1))
    else:
        assert predictions.shape == (2, 10)
        np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["alexnet", "googlenet", "resnet"])
def test_deep_networks_build_at_180(architecture):
    model = build_backbone(architecture, (180, 180, 3), 2)
    assert tuple(model.compute_output_shape((None, 180, 180, 3))) == (None, 1)


def test_alexnet_parameter_count_follows_its_layers():
    """Five conv+BN layers (BN: 4 numbers per channel), flatten, 2 dense layers, head."""
    filters, channels, side, dense = (96, 256, 384, 384, 256), 3, 224, 64
    kernels = (11, 5, 3, 3, 3)
    expected = 0
    for kernel, width in zip(kernels, filters, strict=True):
        expected += kernel * kernel * channels * width + 4 * width
        channels = width
    side = math.ceil(math.ceil(math.ceil(math.ceil(side / 4) / 2) / 2) / 2)  # stem + 3 pools
    flat = side * side * filters[-1]
    expected += flat * dense + dense + dense * dense + dense + dense * 1000 + 1000
    model = build_backbone("alexnet", (224, 224, 3), 1000, dense_units=dense)
    assert model.count_params() == expected


def test_googlenet_auxiliary_heads_and_module_widths():
    options = {"stem_strides": 1}
    with_aux = build_backbone("googlenet", (32, 32, 3), 10, **options)
    without = build_backbone("googlenet", (32, 32, 3), 10, aux_heads=False, **options)
    assert isinstance(with_aux, AuxiliaryHeadsModel)
    assert not isinstance(without, AuxiliaryHeadsModel)
    # Each head: 1x1 conv to 128 + BN, on a 2x2 map (4x4 pooled 5x5/3) -> 512 -> 1024 -> 10.
    heads = sum(c * 128 + 4 * 128 + 512 * 1024 + 1024 + 1024 * 10 + 10 for c in (512, 528))
    assert with_aux.count_params() - without.count_params() == heads

    widths = {
        name: without.get_layer(f"inception_{name}").output.shape[-1]
        for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
    }
    # Table 1 of Szegedy et al. (2015), "output size" column.
    assert widths == {
        "3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512,
        "4d": 528, "4e": 832, "5a": 832, "5b": 1024,
    }  # fmt: skip


def preact_resnet_parameters(depth: int, width: int, classes: int) -> int:
    """Count of a pre-activation ResNet (ImageNet stem, no conv biases), from the paper."""
    bottleneck, units = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3))}[depth]
    total = 7 * 7 * 3 * width  # stem
    channels = width
    for stage, count in enumerate(units):
        inner = width * 2**stage
        out = inner * 4 if bottleneck else inner
        for unit in range(count):
            total += 4 * channels  # pre-activation BN
            if bottleneck:
                total += channels * inner + 4 * inner + 9 * inner * inner + 4 * inner
                total += inner * out
            else:
                total += 9 * channels * inner + 4 * inner + 9 * inner * inner
            if channels != out or (stage > 0 and unit == 0):
                total += channels * out  # projection shortcut
            channels = out
    return total + 4 * channels + channels * classes + classes  # final BN, head


@pytest.mark.parametrize(("depth", "width"), [(18, 64), (50, 16)])
def test_resnet_parameter_count_follows_the_paper(depth, width):
    model = build_backbone("resnet", (64, 64, 3), 1000, depth=depth, width=width)
    assert model.count_params() == preact_resnet_parameters(depth, width, 1000)


def test_options_reach_the_builder():
    default = build_backbone("mini_xception", (32, 32, 3), 2)
    narrow = build_backbone("mini_xception", (32, 32, 3), 2, filters=(8, 16), dropout=0.2)
    assert narrow.count_params() < default.count_params()
    dropouts = [layer for layer in narrow.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.2]


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"Unknown architecture 'xception2'.*mini_xception"):
        build_backbone("xception2", (32, 32, 3), 2)


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"Cannot build 'lenet'.*unexpected keyword.*'dropuot'"):
        build_backbone("lenet", (28, 28, 1), 10, dropuot=0.5)


@pytest.mark.parametrize(
    ("architecture", "input_shape", "num_classes", "options", "message"),
    [
        ("lenet", (28, 28, 1), 1, {}, "at least 2 classes"),
        ("lenet", (28, 28), 10, {}, r"\(height, width, channels\)"),
        ("lenet", (28, 28, 1.5), 10, {}, r"\(height, width, channels\)"),
        ("lenet", (8, 8, 1), 10, {}, r"Cannot build 'lenet' for input shape \(8, 8, 1\)"),
        ("vgg16", (16, 16, 3), 10, {}, "Cannot build 'vgg16'"),
        ("resnet", (32, 32, 3), 2, {"depth": 20}, "depth must be one of 18, 34, 50"),
        ("alexnet", (32, 32, 3), 2, {"filters": (8, 8)}, "give 5 filters"),
    ],
)
def test_bad_builds_raise_clear_errors(architecture, input_shape, num_classes, options, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(architecture, input_shape, num_classes, **options)


def test_numpy_integers_are_accepted():
    model = build_backbone("lenet", tuple(np.array([28, 28, 1])), np.int64(10))
    assert model.count_params() == 431_080


def test_classifier_takes_raw_pixels_and_augments_only_in_training():
    augmentation = {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.2, "seed": 1}
    model = build_classifier("lenet", (28, 28, 1), 10, augmentation=augmentation, dropout=0.1)
    assert isinstance(model.get_layer("augment"), RandomAugment)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)
    backbone = model.layers[-1]
    raw = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(raw)),
        keras.ops.convert_to_numpy(backbone(raw / 255)),
        rtol=1e-5,
    )
    assert build_classifier("lenet", (28, 28, 1), 10).count_params() == 431_080
    with pytest.raises(ValueError, match="unexpected keyword argument 'widths'"):
        build_classifier("lenet", (28, 28, 1), 10, augmentation={}, widths=3)
    with pytest.raises(ValueError, match=r"Unrecognized keyword.*RandomAugment.*vertical_flip"):
        build_classifier("lenet", (28, 28, 1), 10, augmentation={"vertical_flip": True})


def test_mixed_precision_keeps_the_head_in_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_classifier("lenet", (28, 28, 1), 10, augmentation={"zoom": 0.1})
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("augment").compute_dtype == "bfloat16"
    images = np.zeros((2, 28, 28, 1), dtype="float32")
    assert keras.backend.standardize_dtype(model(images, training=True).dtype) == "float32"
