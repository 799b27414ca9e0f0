"""Transfer-learning models: preprocessing, freezing, inference mode, weights, saving.

Offline and small: real ``keras.applications`` bases at 32x32 (their minimum) with random
or test-written weights; nothing is downloaded.
"""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
from pydantic import ValidationError

from image_classifiers.core.models import transfer
from image_classifiers.core.models.transfer import (
    BASES,
    ApplicationPreprocessing,
    InferenceMode,
    WeightsError,
    build_transfer_model,
    load_base,
    pretrained_base,
    unfreeze_top_layers,
)
from image_classifiers.core.params import TransferParams
from image_classifiers.datasets import KerasModelDataset

SHAPE = (32, 32, 3)
APPLICATION_MODULES = {
    "vgg16": keras.applications.vgg16,
    "xception": keras.applications.xception,
    "resnet50": keras.applications.resnet50,
    "mobilenet_v2": keras.applications.mobilenet_v2,
    "efficientnet_b0": keras.applications.efficientnet,
}


def _images(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def _trainable_paths(model: keras.Model) -> set[str]:
    return {weight.path for weight in model.trainable_weights}


# ---- preprocessing ---------------------------------------------------------------------
@pytest.mark.parametrize("base", sorted(APPLICATION_MODULES))
def test_preprocessing_layer_applies_the_bases_own_preprocess_input(base):
    images = _images()
    pixels = images.astype("float32")
    # The NumPy code path of preprocess_input, independent of the tensor one the layer uses.
    expected = APPLICATION_MODULES[base].preprocess_input(pixels.copy())
    layer = ApplicationPreprocessing(base)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(pixels)), expected, atol=1e-4)
    np.testing.assert_array_equal(pixels, images.astype("float32"))  # input left untouched


def test_every_required_base_is_offered():
    assert {"vgg16", "xception", "resnet50", "mobilenet_v2", "efficientnet_b0"} <= set(BASES)


# ---- building: errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": "vgg17"}, "Unknown transfer.base 'vgg17'. Choose one of: vgg16"),
        ({"base": "xception"}, "at least 71x71"),
    ],
)
def test_build_rejects_bad_options_with_clear_messages(kwargs, message):
    with pytest.raises(ValueError) as error:
        build_transfer_model(SHAPE, 2, **{"weights": None, **kwargs})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "mean"}, "pooling\n  Input should be 'flatten', 'avg' or 'max'"),
        ({"dropout": 1.0}, "dropout\n  Input should be less than 1"),
        ({"dense_units": 0}, "dense_units\n  Input should be greater than or equal to 1"),
    ],
)
def test_the_transfer_group_rejects_bad_head_options(kwargs, message):
    # Kedro validates the group before any node builds a model.
    with pytest.raises(ValidationError, match=message):
        TransferParams(base="vgg16", **kwargs)


def test_build_rejects_grayscale_input():
    with pytest.raises(ValueError, match=r"takes RGB images \(height, width, 3\)"):
        build_transfer_model((32, 32, 1), 2, base="vgg16", weights=None)


# ---- freezing ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg16_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_transfer_model(SHAPE, 2, base="vgg16", weights=None)


@pytest.fixture(scope="module")
def mobilenet_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_transfer_model(
        SHAPE, 3, base="mobilenet_v2", weights=None, pooling="avg", dense_units=None
    )


def test_vgg16_at_32x32_with_the_batch_norm_head():
    """The reference head for CIFAR-10: Flatten -> Dense 256 -> BN -> ReLU -> softmax."""
    model = build_transfer_model(
        (32, 32, 3), 10, base="vgg16", weights=None, dense_units=256, batch_norm=True, dropout=0
    )
    # Base 14,714,688; 1x1x512 -> 256 without bias 131,072; BN 1,024 (512 trainable);
    # softmax 2,570.
    assert model.count_params() == 14_714_688 + 131_072 + 1_024 + 2_570
    assert _trainable_paths(model) == {
        "dense/kernel",
        "dense_bn/gamma",
        "dense_bn/beta",
        "predictions/kernel",
        "predictions/bias",
    }
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["dense", "dense_bn", "dense_relu", "predictions"]
    assert "dropout" not in names
    assert unfreeze_top_layers(model, 4)[0] == "block5_conv1"


def test_phase_one_trains_the_head_only(vgg16_model):
    transfer.freeze_base(vgg16_model)
    assert pretrained_base(vgg16_model).trainable_weights == []
    assert _trainable_paths(vgg16_model) == {
        "dense/kernel",
        "dense/bias",
        "predictions/kernel",
        "predictions/bias",
    }
    assert vgg16_model.output_shape == (None, 1)  # two classes: one sigmoid unit


def test_unfreezing_the_reference_top_four_layers_of_vgg16(vgg16_model):
    names = unfreeze_top_layers(vgg16_model, 4)
    assert names == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    base_weights = {w.path for w in pretrained_base(vgg16_model).trainable_weights}
    assert base_weights == {f"block5_conv{i}/{p}" for i in (1, 2, 3) for p in ("kernel", "bias")}
    transfer.freeze_base(vgg16_model)
    assert pretrained_base(vgg16_model).trainable_weights == []


def test_unfreezing_skips_batch_normalization(mobilenet_model):
    base = pretrained_base(mobilenet_model)
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    non_bn = [layer for layer in layers if not isinstance(layer, keras.layers.BatchNormalization)]
    names = unfreeze_top_layers(mobilenet_model, 6)
    assert names == [layer.name for layer in non_bn[-6:]]
    # The top of MobileNetV2 interleaves BN layers: the six reach past three of them.
    top = layers[layers.index(non_bn[-6]) :]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in top) == 3
    for layer in layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (layer.name in names and not is_bn), layer.name
    expected = {w.path for layer in non_bn[-6:] for w in layer.weights}
    assert {w.path for w in base.trainable_weights} == expected
    assert _trainable_paths(mobilenet_model) >= expected | {"predictions/kernel"}


def test_unfreezing_rejects_a_count_out_of_range(mobilenet_model):
    base = pretrained_base(mobilenet_model)
    count = sum(
        not isinstance(layer, (keras.layers.InputLayer, keras.layers.BatchNormalization))
        for layer in base.layers
    )
    assert unfreeze_top_layers(mobilenet_model, count)  # all of them is fine
    for bad in (-1, count + 1, 2.5):
        with pytest.raises(
            ValueError, match=rf"unfreeze_top_k must be an integer in \[0, {count}\]"
        ):
            unfreeze_top_layers(mobilenet_model, bad)
    transfer.freeze_base(mobilenet_model)


def test_pretrained_base_of_another_model_is_a_clear_error():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="has no pretrained base: build it with"):
        unfreeze_top_layers(model, 1)


# ---- inference mode ---------------------------------------------------------------------
def test_base_runs_in_inference_mode_while_the_head_trains():
    """``fit`` calls the model with training=True: the base must ignore it, the head not."""
    inputs = keras.Input((8,))
    x = keras.layers.Dropout(0.5)(inputs)
    x = keras.layers.BatchNormalization()(x)
    base = keras.Model(inputs, x)
    outer_in = keras.Input((8,))
    features = InferenceMode(base)(outer_in)
    outputs = keras.layers.Dropout(0.5)(features)
    model = keras.Model(outer_in, [features, outputs])
    data = np.full((16, 8), 3.0, dtype="float32")

    train_features, train_outputs = (np.asarray(t) for t in model(data, training=True))
    infer_features, infer_outputs = (np.asarray(t) for t in model(data, training=False))
    np.testing.assert_allclose(train_features, infer_features)  # no dropout, moving stats
    assert (train_outputs == 0).any() and not (infer_outputs == 0).any()  # head dropout on


# ---- weights -----------------------------------------------------------------------------
def _write_legacy_h5(model: keras.Model, path) -> None:
    # Keras' downloadable ImageNet files use this layout (what weights: imagenet loads).
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.mark.parametrize("suffix", [".weights.h5", "_notop.h5"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    keras.utils.set_random_seed(1)
    source = load_base("vgg16", SHAPE, None)
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".weights.h5":
        source.save_weights(path)
    else:
        _write_legacy_h5(source, path)
    keras.utils.set_random_seed(2)
    fresh = load_base("vgg16", SHAPE, None)
    assert not np.array_equal(fresh.get_weights()[0], source.get_weights()[0])

    loaded = load_base("vgg16", SHAPE, str(path))
    for got, want in zip(loaded.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_weights_for_another_base_are_rejected_with_the_expected_file_name(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    load_base("vgg16", SHAPE, None).save_weights(path)
    with pytest.raises(WeightsError) as error:
        load_base("mobilenet_v2", SHAPE, str(path))
    message = str(error.value)
    assert "doesn't fit transfer.base 'mobilenet_v2'" in message
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in message


def test_missing_or_odd_weights_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="no file at") as error:
        load_base("vgg16", SHAPE, str(tmp_path / "nowhere.h5"))
    assert (
        '--params="transfer.weights=/path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"'
        in str(error.value)
    )
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match=r"not a Keras weights file \(.h5 or .weights.h5\)"):
        load_base("vgg16", SHAPE, str(text))


@pytest.mark.parametrize(
    ("base", "shape", "file_name"),
    [
        ("vgg16", SHAPE, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        (
            "mobilenet_v2",
            (96, 96, 3),
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5",
        ),
        ("efficientnet_b0", SHAPE, "efficientnetb0_notop.h5"),
    ],
)
def test_failed_download_says_how_to_provide_a_local_file(monkeypatch, base, shape, file_name):
    asked = []

    def unreachable(fname, origin, **kwargs):
        asked.append((fname, origin))
        # What keras.utils.get_file raises without network access.
        raise Exception(
            f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known"
        )

    # keras.applications call get_file through this module (keras.utils.get_file is the same
    # function, bound elsewhere).
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", unreachable)
    with pytest.raises(WeightsError) as error:
        load_base(base, shape, "imagenet")
    message = str(error.value)
    assert [name for name, _ in asked] == [file_name]  # the file Keras looks for
    assert f"({asked[0][1]})" in message  # and where Keras downloads it from
    assert f"Could not get the ImageNet weights for transfer.base '{base}'" in message
    assert "Name or service not known" in message
    assert f'--params="transfer.weights=/path/to/{file_name}"' in message
    assert "~/.keras/models/" in message


def test_local_efficientnet_weights_match_keras_imagenet_loading(tmp_path, monkeypatch):
    """A local copy of Keras' EfficientNet file must give what weights='imagenet' gives."""
    keras.utils.set_random_seed(3)
    source = load_base("efficientnet_b0", SHAPE, None)
    normalization = next(
        layer for layer in source.layers if isinstance(layer, keras.layers.Normalization)
    )
    # Keras' ImageNet file stores the standard deviation as the Normalization variance.
    normalization.adapt_mean.assign(np.array([0.485, 0.456, 0.406], dtype="float32"))
    normalization.adapt_variance.assign(np.array([0.229, 0.224, 0.225], dtype="float32"))
    path = tmp_path / "efficientnetb0_notop.weights.h5"
    source.save_weights(path)
    monkeypatch.setattr(
        "keras.src.utils.file_utils.get_file", lambda fname, origin, **kwargs: str(path)
    )

    like_keras = load_base("efficientnet_b0", SHAPE, "imagenet")
    local = load_base("efficientnet_b0", SHAPE, str(path))
    images = _images().astype("float32")

    def stem(base: keras.Model) -> np.ndarray:
        # Random deep features all but vanish; the first convolution shows the input scaling.
        return np.asarray(keras.Model(base.input, base.get_layer("stem_conv").output)(images))

    expected = stem(like_keras)
    np.testing.assert_allclose(stem(local), expected, rtol=1e-4, atol=1e-4)
    # Without the correction (the file's statistics as they are) the scaling would differ.
    assert not np.allclose(stem(source), expected, rtol=1e-2, atol=1e-2)


# ---- saving ------------------------------------------------------------------------------
def test_saved_model_reloads_and_predicts_the_same(tmp_path, mobilenet_model):
    unfreeze_top_layers(mobilenet_model, 3)
    dataset = KerasModelDataset(str(tmp_path / "transfer_mobilenet_v2.keras"))
    dataset.save(mobilenet_model)
    reloaded = dataset.load()
    images = _images(6, seed=5)
    np.testing.assert_allclose(reloaded(images), mobilenet_model(images), atol=1e-6)
    assert _trainable_paths(reloaded) == _trainable_paths(mobilenet_model)
    assert isinstance(reloaded.get_layer("preprocess"), ApplicationPreprocessing)
    assert pretrained_base(reloaded).name == pretrained_base(mobilenet_model).name
    transfer.freeze_base(mobilenet_model)


def test_augmentation_runs_on_raw_pixels_before_preprocessing():
    model = build_transfer_model(
        SHAPE, 2, base="mobilenet_v2", weights=None, augmentation={"horizontal_flip": True}
    )
    names = [layer.name for layer in model.layers]
    assert names.index("augment") < names.index("preprocess") < names.index("pretrained_base")
    assert tuple(model.get_layer("augment").get_config()["value_range"]) == (0, 255)
