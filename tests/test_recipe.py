"""The training recipe's options (core): the LR range test, MixUp/CutMix with their label
mixing, the moving average of the weights (EMA), random erasing (that the training step stays
compiled with all of them on: tests/test_compilation.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from test_training import image_set, options, tiny_model

from image_classifiers.core.layers import RandomAugment
from image_classifiers.core.lr_range import suggest_learning_rate
from image_classifiers.core.params import LrFindParams, TrainingParams
from image_classifiers.core.training import (
    compile_model,
    cross_entropy,
    find_learning_rate,
    fit_model,
    mix_batch,
    predict_probabilities,
)


def test_the_sweep_suggests_a_rate_inside_its_range_and_puts_the_weights_back():
    model = tiny_model(units=2)
    before = model.get_weights()
    sweep = LrFindParams(min_learning_rate=1e-4, max_learning_rate=10.0, steps=40)
    found = find_learning_rate(model, image_set(64), options(), sweep)
    rates = found["learning_rates"]
    assert 1e-4 <= found["suggested_learning_rate"] <= 10.0
    assert found["method"].startswith(("steepest", "the rate at"))
    assert rates[0] == pytest.approx(1e-4) and len(rates) == found["steps_run"] <= 40
    assert np.allclose(np.diff(np.log(rates)), np.log(1e5) / 39)  # exponential steps
    # Each batch's own loss, recovered from Keras' running mean: the first equals it.
    assert np.isfinite(found["losses"]).all() and found["smoothed_losses"][0] == pytest.approx(
        found["losses"][0]
    )
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_the_sweep_stops_when_the_loss_diverges():
    sweep = LrFindParams(min_learning_rate=1.0, max_learning_rate=1e6, steps=60, divergence=1.5)
    found = find_learning_rate(tiny_model(), image_set(64), options(optimizer="adam"), sweep)
    assert found["diverged"] and found["steps_run"] < 60


def test_suggestions_on_a_known_curve():
    rates = np.geomspace(1e-6, 1.0, 100)
    # Flat, a descent steepest at 1e-3, a minimum at 1e-1, then divergence.
    loss = 2.0 - np.tanh(np.log10(rates) + 3.0) + np.where(rates > 0.1, 50 * (rates - 0.1), 0)
    steepest, method = suggest_learning_rate(rates, loss, "steepest")
    assert 3e-4 < steepest < 3e-3 and method.startswith("steepest")
    minimum, method = suggest_learning_rate(rates, loss, "minimum")
    assert minimum == pytest.approx(rates[np.argmin(loss)] / 10) and "divided by 10" in method
    # A loss that only rises has no descent to measure: the minimum's rule, inside the range.
    assert suggest_learning_rate(rates, rates, "steepest")[0] == rates[0]
    with pytest.raises(ValueError, match="no finite loss"):
        suggest_learning_rate(rates, np.full(100, np.nan))


def test_learning_rate_auto_trains_with_the_suggestion():
    _, history = fit_model(
        tiny_model(), image_set(32), image_set(16, seed=1), options(epochs=1, learning_rate="auto")
    )
    assert 1e-7 <= history["learning_rate"][0] <= 10.0
    with pytest.raises(ValueError, match="fit_model"):
        compile_model(tiny_model(), TrainingParams(learning_rate="auto"))


def _two_images(size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.zeros((size, size, 3)), np.full((size, size, 3), 200)]).astype(np.uint8)
    return images, np.eye(2, dtype=np.float32)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_mix_labels_as_they_mix_pixels(mixup, cutmix):
    images, labels = _two_images()
    rng = np.random.default_rng(0)
    for _ in range(20):
        mixed, soft = mix_batch(images, labels, mixup, cutmix, rng)
        assert mixed.dtype == np.float32 and soft.shape == (2, 2)
        assert np.allclose(soft.sum(axis=1), 1.0)
        # The share of the second image in the first: 200 at each pixel for CutMix's box,
        # 200 * (1 - share) everywhere for MixUp; either way the mean pixel tells it.
        partner_share = mixed[0].mean() / 200
        assert soft[0, 1] == pytest.approx(partner_share, abs=1e-5)
        assert soft[1, 0] == pytest.approx(1 - mixed[1].mean() / 200, abs=1e-5)
        if not mixup:  # CutMix pastes whole pixels
            assert set(np.unique(mixed)) <= {0.0, 200.0}


def test_mixing_trains_a_softmax_on_one_hot_labels():
    model, history = fit_model(
        tiny_model(units=2),
        image_set(32),
        image_set(16, seed=1),
        options(epochs=1, mixup_alpha=0.2, cutmix_alpha=1.0),
    )
    assert model.loss.name == "categorical_crossentropy" and len(history["loss"]) == 1


class RawWeights(keras.callbacks.Callback):
    """Each epoch's raw weights and, copied without disturbing training, its average."""

    def __init__(self):
        super().__init__()
        self.raw, self.averaged = [], []

    def on_epoch_end(self, epoch, logs=None):
        variables = self.model.trainable_variables
        raw = [keras.ops.convert_to_numpy(v) for v in variables]
        self.model.optimizer.finalize_variable_values(variables)
        self.averaged.append([keras.ops.convert_to_numpy(v) for v in variables])
        for variable, value in zip(variables, raw, strict=True):
            variable.assign(value)
        self.raw.append(raw)


def test_ema_weights_are_validated_kept_and_saved(tmp_path):
    validation = image_set(16, seed=1)
    watch = RawWeights()
    training = options(epochs=3, ema=True, ema_momentum=0.8, optimizer="adam")
    model, history = fit_model(tiny_model(), image_set(32), validation, training, callbacks=[watch])
    best = int(np.argmin(history["val_loss"]))
    kept = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(np.allclose(k, a) for k, a in zip(kept, watch.averaged[best], strict=True))
    assert not all(np.allclose(k, r) for k, r in zip(kept, watch.raw[best], strict=True))
    # Validation scored the averaged weights: the kept model gives the best val_loss again.
    probabilities = predict_probabilities(model, validation["images"], 8)
    assert cross_entropy(probabilities, validation["labels"]) == pytest.approx(
        history["val_loss"][best], rel=1e-4
    )
    model.save(tmp_path / "ema.keras")
    saved = keras.saving.load_model(tmp_path / "ema.keras")
    assert all(
        np.array_equal(s, k) for s, k in zip(saved.get_weights(), model.get_weights(), strict=True)
    )


def test_random_erasing_puts_noise_boxes_on_the_given_share_of_images():
    images = np.full((64, 16, 16, 3), 128, np.uint8)
    layer = RandomAugment(erasing=0.5, erasing_area=0.3, value_range=(0, 255), seed=3)
    erased = keras.ops.convert_to_numpy(layer(images, training=True)) != 128
    shares = erased.any(axis=-1).mean(axis=(1, 2))
    touched = shares > 0
    assert 16 <= touched.sum() <= 48  # about half of the images
    assert shares.max() <= 0.3 + 2 * 16 / 256  # the box's area, give or take its edges
    assert not erased[~touched].any()
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    with pytest.raises(ValueError, match="erasing"):
        RandomAugment(erasing=1.5)
