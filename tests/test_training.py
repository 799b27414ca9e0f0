"""Tests for image_classifiers.core.training: compile options, fitting, batches, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from image_classifiers.core.params import TrainingParams
from image_classifiers.core.probabilities import predicted_labels
from image_classifiers.core.training import (
    ImageBatches,
    class_weights,
    compile_model,
    cross_entropy,
    fit_model,
    model_build_scope,
    predict_probabilities,
)

SIZE = 12


def image_set(n: int, flip: bool = False, seed: int = 0, classes=("cat", "dog")) -> dict:
    """Dark cats and bright dogs (or the reverse with ``flip``), as the fixture archive."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    dark = labels == (1 if flip else 0)
    base = np.where(dark, 60, 190)[:, None, None, None]
    images = np.clip(rng.normal(base, 30, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return {"images": images, "labels": labels, "classes": list(classes), "files": []}


def tiny_model(units: int = 1, seed: int = 0) -> keras.Model:
    """A few hundred parameters: rescale, one conv, global pooling, dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    activation = "sigmoid" if units == 1 else "softmax"
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(x))


def options(**overrides) -> TrainingParams:
    defaults = {"epochs": 3, "batch_size": 8, "learning_rate": 0.01, "seed": 7}
    return TrainingParams(**{**defaults, **overrides})


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("rmsprop", keras.optimizers.RMSprop),
        ("adam", keras.optimizers.Adam),
        ("AdamW", keras.optimizers.AdamW),
    ],
)
def test_compile_model_builds_named_optimizer(name, cls):
    model = compile_model(tiny_model(), TrainingParams(optimizer=name, learning_rate=0.005))
    assert isinstance(model.optimizer, cls)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)
    assert model.loss == "binary_crossentropy"


def test_compile_model_uses_sparse_loss_for_softmax_and_weight_decay():
    model = compile_model(tiny_model(units=3), TrainingParams(optimizer="adamw", weight_decay=0.1))
    assert model.loss == "sparse_categorical_crossentropy"
    assert model.optimizer.weight_decay == pytest.approx(0.1)


def test_cosine_schedule_needs_steps_and_decays():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        compile_model(tiny_model(), TrainingParams(schedule="cosine"))
    model = compile_model(
        tiny_model(),
        TrainingParams(schedule="cosine", epochs=2, learning_rate=0.1),
        steps_per_epoch=5,
    )
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 10
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-7)


def test_warmup_ramps_linearly_to_the_learning_rate_then_decays():
    model = compile_model(
        tiny_model(),
        TrainingParams(schedule="cosine", warmup_epochs=2, epochs=6, learning_rate=0.1),
        steps_per_epoch=5,
    )
    schedule = model.optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(5)) == pytest.approx(0.05)  # half-way through the warm-up
    assert float(schedule(10)) == pytest.approx(0.1)  # the peak
    assert float(schedule(20)) == pytest.approx(0.05)  # half-way through the decay
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-7)


def test_label_smoothing_softens_the_loss_of_either_head():
    binary = compile_model(tiny_model(), TrainingParams(label_smoothing=0.2))
    assert isinstance(binary.loss, keras.losses.BinaryCrossentropy)
    assert binary.loss.get_config()["label_smoothing"] == pytest.approx(0.2)
    # The sparse loss cannot smooth: a softmax trains on one-hot targets instead.
    softmax = compile_model(tiny_model(units=3), TrainingParams(label_smoothing=0.2))
    assert isinstance(softmax.loss, keras.losses.CategoricalCrossentropy)


def test_softmax_trains_with_label_smoothing():
    data = image_set(16, classes=("a", "b", "c"))
    _, history = fit_model(
        tiny_model(units=3),
        data,
        image_set(8, seed=1, classes=("a", "b", "c")),
        options(epochs=1, label_smoothing=0.1),
    )
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


def test_flip_average_changes_nothing_for_mirror_symmetric_images():
    model = compile_model(tiny_model(seed=3), TrainingParams())
    images = image_set(8)["images"]
    symmetric = np.concatenate(
        [images[:, :, : SIZE // 2], images[:, :, : SIZE // 2][:, :, ::-1]], 2
    )
    np.testing.assert_allclose(
        predict_probabilities(model, symmetric, 4, flip_average=True),
        predict_probabilities(model, symmetric, 4),
        rtol=1e-5,
        atol=1e-6,
    )


def test_flip_average_is_the_mean_over_the_image_and_its_mirror():
    model = compile_model(tiny_model(seed=3), TrainingParams())
    images = image_set(8)["images"]
    plain = predict_probabilities(model, images, 4)
    mirrored = predict_probabilities(model, images[:, :, ::-1], 4)
    averaged = predict_probabilities(model, images, 4, flip_average=True)
    assert not np.allclose(plain, mirrored)  # the model is not mirror-symmetric
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_training_batches_are_full_and_reshuffled_every_epoch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=-1)
    batches = ImageBatches(images, np.arange(10), batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 2  # 10 // 4: the partial batch is dropped

    def epoch() -> list[int]:
        seen = [batches[i][1] for i in range(len(batches))]
        assert all(len(labels) == 4 for labels in seen)
        return [int(v) for labels in seen for v in labels]

    first = epoch()
    assert len(set(first)) == 8  # no image twice in an epoch
    assert all(images[v, 0, 0, 0] == v for v in first)  # images stay with their labels
    batches.on_epoch_end()
    assert epoch() != first


def test_inference_pads_last_batch_and_predictions_match_direct_calls():
    model = tiny_model()
    images = image_set(11)["images"]
    batches = ImageBatches(images, None, batch_size=4)
    assert len(batches) == 3 and batches[2][0].shape == (4, SIZE, SIZE, 3)
    probabilities = predict_probabilities(model, images, batch_size=4)
    direct = keras.ops.convert_to_numpy(model(images, training=False))[:, 0]
    assert probabilities.shape == (11, 2)
    np.testing.assert_allclose(probabilities[:, 1], direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_cross_entropy_matches_keras_loss_and_labels_follow_threshold():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.0, 1.0]], np.float32)
    labels = np.array([0, 1, 1, 1])
    expected = keras.losses.binary_crossentropy(labels[:, None], probabilities[:, 1:])
    assert cross_entropy(probabilities, labels) == pytest.approx(
        float(np.mean(keras.ops.convert_to_numpy(expected))), rel=1e-5
    )
    assert predicted_labels(probabilities).tolist() == [0, 1, 0, 1]
    assert predicted_labels(probabilities, threshold=0.8).tolist() == [0, 0, 0, 1]
    three = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    assert predicted_labels(three).tolist() == [1, 0]


def test_model_build_scope_sets_seed_and_mixed_precision_then_restores_policy():
    def build() -> keras.Model:
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(inputs))

    with model_build_scope(TrainingParams(seed=3, mixed_precision=True)):
        first = build()
    assert first.layers[-1].compute_dtype == "bfloat16"
    assert first.layers[-1].variable_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    with model_build_scope(TrainingParams(seed=3)):
        second = build()
    assert second.layers[-1].compute_dtype == "float32"
    np.testing.assert_array_equal(first.get_weights()[0], second.get_weights()[0])


@pytest.mark.slow
def test_fit_lowers_the_loss_and_records_history():
    model, history = fit_model(
        tiny_model(), image_set(48), image_set(16, seed=1), options(epochs=5)
    )
    assert set(history) >= {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "epoch_seconds",
    }
    assert all(len(values) == 5 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert min(history["val_loss"]) < history["val_loss"][0]
    assert history["learning_rate"] == pytest.approx([0.01] * 5)
    assert all(seconds > 0 for seconds in history["epoch_seconds"])
    # The reported val_loss is the model's real loss on the validation images.
    validation = image_set(16, seed=1)
    probabilities = predict_probabilities(model, validation["images"])
    assert cross_entropy(probabilities, validation["labels"]) == pytest.approx(
        min(history["val_loss"]), rel=1e-4
    )


def test_class_weights_balanced_or_by_name():
    labels = np.array([0, 0, 0, 1])
    assert class_weights("balanced", labels, ["cat", "dog"]) == {0: 4 / 6, 1: 2.0}
    assert class_weights({"dog": 3.0}, labels, ["cat", "dog"]) == {1: 3.0}
    assert class_weights(None, labels, ["cat", "dog"]) is None
    with pytest.raises(ValueError, match=r"names \['cow'\]"):
        class_weights({"cow": 2.0}, labels, ["cat", "dog"])


def test_class_weights_change_the_training_loss():
    train = image_set(16)
    train["labels"][:12] = 0  # 14 cats, 2 dogs
    losses = [
        fit_model(tiny_model(), train, image_set(8), options(epochs=1, class_weight=weight))[1]
        for weight in (None, "balanced")
    ]
    assert losses[0]["loss"][0] != pytest.approx(losses[1]["loss"][0], rel=1e-3)


@pytest.mark.slow
def test_best_val_loss_weights_are_restored_and_early_stopping_ends_training():
    # Validation labels are the reverse of training: learning makes val_loss worse, so
    # the best epoch is the first and every later one is worse.
    validation = image_set(16, flip=True, seed=1)
    model, history = fit_model(
        tiny_model(), image_set(48), validation, options(epochs=20, early_stopping_patience=2)
    )
    assert len(history["loss"]) == 3  # best at epoch 1, then 2 epochs without improvement
    assert int(np.argmin(history["val_loss"])) == 0
    assert history["val_loss"][-1] > history["val_loss"][0] + 1e-3
    restored = cross_entropy(
        predict_probabilities(model, validation["images"]), validation["labels"]
    )
    assert restored == pytest.approx(history["val_loss"][0], rel=1e-4)


@pytest.mark.slow
def test_cosine_schedule_lowers_learning_rate_each_epoch():
    _, history = fit_model(
        tiny_model(), image_set(32), image_set(8), options(epochs=3, schedule="cosine")
    )
    rates = history["learning_rate"]
    assert rates[0] < 0.01 and rates[0] > rates[1] > rates[2] >= 0


def test_zero_epochs_leaves_the_model_untrained_but_compiled():
    model = tiny_model()
    before = [w.copy() for w in model.get_weights()]
    model, history = fit_model(model, image_set(16), image_set(8), options(epochs=0))
    assert all(values == [] for values in history.values())
    assert model.optimizer is not None and model.compiled
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_batch_size_larger_than_training_set_is_clamped(caplog):
    _, history = fit_model(
        tiny_model(), image_set(6), image_set(4), options(epochs=1, batch_size=64)
    )
    assert len(history["loss"]) == 1
    assert "larger than the 6 training images" in caplog.text


@pytest.mark.parametrize(
    ("train", "validation", "model_units", "message"),
    [
        (image_set(0), image_set(4), 1, "train_set holds no images"),
        (image_set(8), image_set(0), 1, "validation_set holds no images"),
        (image_set(8), image_set(4, classes=("dog", "cat")), 1, "classes"),
        (image_set(8), image_set(4), 3, "predicts 3 unit"),
    ],
)
def test_fit_rejects_unusable_data(train, validation, model_units, message):
    with pytest.raises(ValueError, match=message):
        fit_model(tiny_model(units=model_units), train, validation, options())


def test_fit_rejects_images_of_another_size():
    wrong = image_set(8)
    wrong["images"] = np.zeros((8, SIZE + 2, SIZE + 2, 3), np.uint8)
    with pytest.raises(ValueError, match="model takes images of shape"):
        fit_model(tiny_model(), wrong, image_set(4), options())


def test_fit_rejects_labels_outside_the_classes():
    bad = image_set(8)
    bad["labels"] = bad["labels"] + 1
    with pytest.raises(ValueError, match="class indices"):
        fit_model(tiny_model(), bad, image_set(4), options())


class _BatchOnlyImages:
    """An image split that hands out rows but refuses to be copied whole (``np.array``).

    Stands in for a memory-mapped split larger than RAM; records the rows of each read.
    """

    def __init__(self, images: np.ndarray):
        self._images = images
        self.shape, self.dtype, self.ndim = images.shape, images.dtype, images.ndim
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index):
        rows = self._images[index]
        self.reads.append(len(rows))
        return rows

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole split was copied into RAM")


def test_fit_and_predict_read_the_splits_one_batch_at_a_time():
    train, validation = image_set(32), image_set(16, seed=1)
    train["images"] = _BatchOnlyImages(train["images"])
    validation["images"] = _BatchOnlyImages(validation["images"])
    model, history = fit_model(tiny_model(), train, validation, options(epochs=2))
    assert len(history["loss"]) == 2
    assert train["images"].reads and max(train["images"].reads) == 8  # batch_size
    assert validation["images"].reads and max(validation["images"].reads) <= 8
    probabilities = predict_probabilities(model, validation["images"], batch_size=8)
    assert probabilities.shape == (16, 2)


class _Crash(keras.callbacks.Callback):
    """Stands in for a kill: raises once ``after`` epochs have ended (and been backed up)."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


def _resumable_run(folder, after: int | None = None, **overrides):
    keras.backend.clear_session()  # the same layer names as a fresh process would give
    callbacks = [_Crash(after)] if after else []
    training = options(epochs=6, checkpoint_dir=str(folder / "checkpoints"), **overrides)
    return fit_model(
        tiny_model(), image_set(32), image_set(8, seed=1), training, callbacks=callbacks
    )


def _crash_then_rerun(folder, caplog, after: int, **overrides):
    """A training that crashes after ``after`` epochs, then the same call (``overrides``
    changed) again; its result, with ``caplog`` holding the second call's log only."""
    caplog.set_level("INFO")
    with pytest.raises(KeyboardInterrupt):
        _resumable_run(folder, after=after)
    caplog.clear()
    return _resumable_run(folder, **overrides)


@pytest.mark.slow
def test_a_crashed_training_resumes_after_its_last_finished_epoch(tmp_path, caplog):
    model, history = _crash_then_rerun(tmp_path, caplog, after=4)
    assert "Resuming" in caplog.text
    epochs = [line for line in caplog.messages if line.startswith("Epoch ") and " - " in line]
    assert epochs[0].startswith("Epoch 5/6") and len(epochs) == 2
    # The history covers the whole training, the epochs before the crash included, and the
    # best of all six epochs is the one restored.
    assert len(history["loss"]) == 6
    best = min(history["val_loss"])
    validation = image_set(8, seed=1)
    restored = cross_entropy(
        predict_probabilities(model, validation["images"]), validation["labels"]
    )
    assert restored == pytest.approx(best, rel=1e-4)
    assert not (tmp_path / "checkpoints").exists()  # removed once training ends


@pytest.mark.slow
def test_a_backup_of_other_parameters_is_not_resumed(tmp_path, caplog):
    _, history = _crash_then_rerun(tmp_path, caplog, after=2, learning_rate=0.02)
    assert "starts afresh" in caplog.text and "Resuming" not in caplog.text
    assert len(history["loss"]) == 6


def test_progress_inside_an_epoch_and_a_forecast_of_the_whole_run(caplog):
    caplog.set_level("INFO")
    fit_model(
        tiny_model(),
        image_set(64),
        image_set(8),
        options(epochs=1, batch_size=4, log_every_seconds=1e-9),
    )
    assert any("batch 2/16" in message for message in caplog.messages)
    assert any("The first steps predict" in message for message in caplog.messages)
