"""AuxiliaryHeadsModel: auxiliary heads shape the training loss only; GoogLeNet saves and loads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from image_classifiers.core.models import AuxiliaryHeadsModel, build_classifier


def two_head_network() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    auxiliary = keras.layers.Dense(1, activation="sigmoid", name="aux")(
        keras.layers.GlobalMaxPooling2D()(x)
    )
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    main = keras.layers.Dense(1, activation="sigmoid", name="main")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return keras.Model(inputs, [main, auxiliary])


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((8, 8, 8, 3), dtype="float32"), rng.integers(0, 2, 8).astype("float32")


@pytest.fixture
def model() -> AuxiliaryHeadsModel:
    model = AuxiliaryHeadsModel(two_head_network(), aux_weight=0.5)
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def bce(y, p) -> float:
    return float(keras.ops.mean(keras.losses.binary_crossentropy(y[:, None], p)))


def test_inference_returns_the_main_head_only(model, data):
    x, _ = data
    main, _ = model.network(x)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(main)
    )
    np.testing.assert_allclose(
        model.predict(x, verbose=0), keras.ops.convert_to_numpy(main), rtol=1e-6
    )


def test_describes_the_inference_model(model):
    network = model.network
    assert model.inputs == network.inputs
    assert model.outputs == network.outputs[:1]
    assert model.input_shape == (None, 8, 8, 3)
    assert model.output_shape == (None, 1)


def test_training_loss_adds_weighted_auxiliary_losses(model, data):
    x, y = data
    main, auxiliary = model(x, training=True)
    loss = model.compute_loss(x, y, (main, auxiliary), training=True)
    assert float(loss) == pytest.approx(bce(y, main) + 0.5 * bce(y, auxiliary), rel=1e-5)
    assert float(model.compute_loss(x, y, main, training=False)) == pytest.approx(bce(y, main))


def test_fit_trains_and_evaluate_scores_the_main_head(model, data):
    x, y = data
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    predictions = model.predict(x, verbose=0)
    assert scores["loss"] == pytest.approx(bce(y, predictions), rel=1e-4)
    assert scores["accuracy"] == pytest.approx(np.mean((predictions[:, 0] > 0.5) == y))


def test_save_and_load_round_trip(model, data, tmp_path):
    x, y = data
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "aux.keras")
    loaded = keras.saving.load_model(tmp_path / "aux.keras")
    assert isinstance(loaded, AuxiliaryHeadsModel)
    assert loaded.aux_weight == 0.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)  # the restored optimizer goes on


def test_needs_an_auxiliary_output():
    inputs = keras.Input((4,))
    single = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="at least one auxiliary output"):
        AuxiliaryHeadsModel(single)


def test_googlenet_classifier_heads_and_save_load(tmp_path):
    model = build_classifier(
        "googlenet",
        (32, 32, 3),
        2,
        augmentation={"horizontal_flip": True, "zoom": 0.2, "seed": 0},
        width_multiplier=0.125,
        stem_strides=1,
    )
    assert isinstance(model, AuxiliaryHeadsModel)
    assert model.network.get_layer("augment") is not None
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype("float32")

    heads = model(images, training=True)
    assert [tuple(h.shape) for h in heads] == [(2, 1)] * 3
    # Eager calls: tracing predict's graph for ~200 layers would take longer than the test.
    predictions = keras.ops.convert_to_numpy(model(images))
    assert predictions.shape == (2, 1)

    model.save(tmp_path / "googlenet.keras")
    loaded = keras.saving.load_model(tmp_path / "googlenet.keras")
    assert isinstance(loaded, AuxiliaryHeadsModel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(images)), predictions, rtol=1e-5)
