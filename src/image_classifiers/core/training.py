"""Compile and train Keras 3 classifiers on decoded image sets; resume a killed run.

Batches are read from the (memory-mapped) uint8 splits one at a time, all of one shape so
that XLA compiles each step once. Keras' callbacks own the chores (``BackupAndRestore``,
``ModelCheckpoint``, ``CSVLogger``, ``EarlyStopping``); what Keras lacks is here: exact
validation on padded batches and progress inside long epochs. See docs/architecture.md.
"""

import csv
import hashlib
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import keras
import numpy as np

from image_classifiers.core.host_memory import RestoreMallocThresholds
from image_classifiers.core.images import read_rows
from image_classifiers.core.lr_range import LearningRateSweep, suggest_learning_rate
from image_classifiers.core.params import LrFindParams, TrainingParams
from image_classifiers.core.probabilities import predicted_labels

logger = logging.getLogger(__name__)

OPTIMIZERS = {
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}
MIXED_PRECISION_POLICY = "mixed_bfloat16"
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")


def data_parallel(training: TrainingParams) -> keras.distribution.DataParallel | None:
    """The ``keras.distribution`` that ``training.distribution`` asks for (JAX only); a
    ``ValueError`` on another backend or for a batch the devices cannot split evenly."""
    if training.distribution == "none":
        return None
    if keras.backend.backend() != "jax":
        if training.distribution == "data_parallel":
            raise ValueError(
                f"training.distribution=data_parallel needs the JAX backend; Keras cannot "
                f"distribute training on {keras.backend.backend()}. Run with "
                "KERAS_BACKEND=jax, or set training.distribution to auto or none."
            )
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2 and training.distribution == "auto":
        return None
    if training.batch_size % len(devices):
        raise ValueError(
            f"training.batch_size {training.batch_size} cannot be split evenly across "
            f"{len(devices)} devices: use a multiple of {len(devices)} (the global batch)."
        )
    return keras.distribution.DataParallel(devices=devices)


def _scope(distribution: keras.distribution.DataParallel | None) -> AbstractContextManager:
    return nullcontext() if distribution is None else distribution.scope()


@contextmanager
def model_build_scope(training: TrainingParams) -> Iterator[None]:
    """Build models in this block: the seed, mixed precision and data parallelism act when
    layers and variables are created, so they cannot be switched on in ``fit_model``."""
    if training.seed is not None:
        keras.utils.set_random_seed(training.seed)
    previous = keras.config.dtype_policy()
    if training.mixed_precision:
        keras.config.set_dtype_policy(MIXED_PRECISION_POLICY)
    try:
        with _scope(data_parallel(training)):
            yield
    finally:
        keras.config.set_dtype_policy(previous)  # later models are not affected by accident


def is_binary(model: keras.Model) -> bool:
    """Whether ``model`` ends in one sigmoid unit (two classes) rather than a softmax."""
    return model.output_shape[-1] == 1


def compile_model(
    model: keras.Model, training: TrainingParams, steps_per_epoch: int | None = None
) -> keras.Model:
    """(Re)compile ``model`` in place with the optimizer, schedule and loss asked for (the
    cosine schedule decays over ``epochs * steps_per_epoch`` steps: ``fit_model`` passes it)."""
    learning_rate: Any = training.learning_rate
    if learning_rate == "auto":
        raise ValueError(
            "training.learning_rate 'auto' is resolved by fit_model (an LR range test): "
            "call fit_model, or give compile_model a number."
        )
    if training.schedule == "cosine":
        if steps_per_epoch is None:
            raise ValueError(
                "training.schedule 'cosine' needs the number of steps per epoch: pass "
                "steps_per_epoch to compile_model (fit_model does this for you)."
            )
        warmup_steps = training.warmup_epochs * steps_per_epoch
        decay_steps = max(1, training.epochs * steps_per_epoch - warmup_steps)
        # With a warm-up: linear from 0 to learning_rate, then the cosine decay.
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else training.learning_rate,
            decay_steps=decay_steps,
            warmup_target=training.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if training.weight_decay is not None:
        kwargs["weight_decay"] = training.weight_decay
    if training.ema:  # Keras keeps the average in the optimizer, inside the compiled step
        kwargs.update(use_ema=True, ema_momentum=training.ema_momentum)
    model.compile(
        optimizer=OPTIMIZERS[training.optimizer](**kwargs),
        loss=training_loss(model, training.label_smoothing, one_hot=soft_labels(training)),
        metrics=["accuracy"],
        steps_per_execution=training.steps_per_execution,
    )
    return model


def soft_labels(training: TrainingParams) -> bool:
    """Whether training needs one-hot (or float) labels: smoothing, MixUp or CutMix."""
    return training.label_smoothing > 0 or training.mixup_alpha > 0 or training.cutmix_alpha > 0


def training_loss(
    model: keras.Model, label_smoothing: float = 0.0, one_hot: bool = False
) -> str | keras.losses.Loss:
    """Binary cross-entropy for one sigmoid unit, else sparse categorical on integer labels;
    categorical on one-hot labels when smoothing or mixing (the sparse loss can do neither)."""
    if not label_smoothing and not one_hot:
        return "binary_crossentropy" if is_binary(model) else "sparse_categorical_crossentropy"
    if is_binary(model):
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def mix_batch(
    images: np.ndarray,
    labels: np.ndarray,
    mixup_alpha: float,
    cutmix_alpha: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """MixUp or CutMix (one of the two at random when both are on) of a batch with the batch
    reversed; float ``labels`` (one-hot, or a sigmoid's targets) mix in the share of each
    image's pixels: CutMix's share is the box actually pasted, after clipping at the edges."""
    cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if cutmix else mixup_alpha
    share = float(rng.beta(alpha, alpha))  # of each image's own pixels
    mixed, partner = images.astype(np.float32), images[::-1]
    if cutmix:
        height, width = images.shape[1:3]
        box = np.sqrt(1.0 - share) * np.array([height, width])
        centre = rng.uniform(0, 1, 2) * [height, width]
        top, left = np.clip(np.round(centre - box / 2), 0, [height, width]).astype(int)
        bottom, right = np.clip(np.round(centre + box / 2), 0, [height, width]).astype(int)
        mixed[:, top:bottom, left:right] = partner[:, top:bottom, left:right]
        share = 1.0 - (bottom - top) * (right - left) / (height * width)
    else:
        mixed = share * mixed + (1.0 - share) * mixed[::-1]  # float32 throughout
    return mixed, (share * labels + (1.0 - share) * labels[::-1]).astype(np.float32)


class ImageBatches(keras.utils.PyDataset):
    """Fixed-size batches of uint8 images (and labels), read from arrays or memory maps.

    Training (``shuffle=True``) reshuffles every epoch and drops the last partial batch,
    and with ``mixup_alpha``/``cutmix_alpha`` mixes each batch (float32 images, float labels:
    outside the compiled step, which sees one input signature); inference keeps the order
    and pads the last batch with black images.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
        *,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
    ):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.training = shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images)) if shuffle else None

    def __len__(self) -> int:
        if self.training:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        start = index * self.batch_size
        if self.training:
            rows = np.sort(self.order[start : start + self.batch_size])
            batch = read_rows(self.images, rows), self.labels[rows]
            if self.mixup_alpha or self.cutmix_alpha:
                return mix_batch(*batch, self.mixup_alpha, self.cutmix_alpha, self.rng)
            return batch
        images = read_rows(self.images, slice(start, start + self.batch_size))
        if missing := self.batch_size - len(images):
            images = np.concatenate([images, np.zeros((missing, *images.shape[1:]), np.uint8)])
        return (images,)

    def on_epoch_end(self) -> None:
        if self.training:
            self.order = self.rng.permutation(len(self.images))


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 32, flip_average: bool = False
) -> np.ndarray:
    """Class probabilities (N, num_classes) in batches of one shape; a one-unit sigmoid head
    gives columns (1 - p, p). ``flip_average`` averages each image with its mirror image."""
    if len(images) == 0:
        return np.zeros((0, max(2, model.output_shape[-1])), dtype=np.float32)

    def predict(pixels: np.ndarray) -> np.ndarray:
        batches = ImageBatches(pixels, None, batch_size)
        outputs = model.predict(batches, verbose=0, callbacks=[RestoreMallocThresholds()])
        # float32 even under mixed precision (bfloat16 outputs); drop the padding.
        return np.asarray(outputs, dtype=np.float32)[: len(images)]

    probabilities = predict(images)
    if flip_average:
        probabilities = (probabilities + predict(images[:, :, ::-1])) / 2
    if probabilities.shape[-1] == 1:
        probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer ``labels``, clipped as Keras' losses are."""
    epsilon = keras.config.epsilon()
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, epsilon, 1.0 - epsilon))))


def check_image_set(name: str, image_set: dict[str, Any]) -> None:
    """Raise a clear ``ValueError`` if ``image_set`` is not a usable, non-empty split."""
    missing = [key for key in ("images", "labels", "classes") if key not in image_set]
    if missing:
        raise ValueError(f"{name} lacks {missing}; it should come from the data pipeline.")
    images, labels = image_set["images"], np.asarray(image_set["labels"])
    if len(images) == 0:
        raise ValueError(
            f"{name} holds no images. Check split.ranges and the decode step's "
            "data_quality report (all images skipped?), then re-run data_processing."
        )
    if images.ndim != 4 or images.dtype != np.uint8 or len(labels) != len(images):
        raise ValueError(
            f"{name} must hold uint8 images (N, H, W, C) and N labels, got {images.dtype} "
            f"{images.shape} and {labels.shape}."
        )
    classes = list(image_set["classes"])
    if len(classes) < 2 or labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(
            f"{name} labels must be class indices in [0, {len(classes)}) for classes "
            f"{classes}, got range [{labels.min()}, {labels.max()}]."
        )


def check_fits(model: keras.Model, name: str, image_set: dict[str, Any]) -> None:
    """Raise a clear ``ValueError`` unless ``image_set`` is usable and fits ``model``."""
    check_image_set(name, image_set)
    shape = tuple(image_set["images"].shape[1:])
    if shape != tuple(model.input_shape[1:]):
        raise ValueError(
            f"The model takes images of shape {tuple(model.input_shape[1:])} but {name} "
            f"holds {shape}: rebuild the model for this data (build_model) or decode the "
            "data at the model's size."
        )
    units, num_classes = model.output_shape[-1], len(image_set["classes"])
    # One sigmoid unit for two classes, or one softmax unit per class.
    if units not in {num_classes, 1 if num_classes == 2 else num_classes}:
        raise ValueError(
            f"The model predicts {units} unit(s) but {name} has {num_classes} classes; "
            "rebuild the model for this data."
        )


class ExactValidation(keras.callbacks.Callback):
    """Adds ``val_loss``, ``val_accuracy``, ``learning_rate`` and ``epoch_seconds`` to the logs,
    first, for the callbacks after it. Keras' own validation would recompile for the last
    partial batch or count its padding: this one predicts on padded batches, then cuts."""

    def __init__(self, validation_set: dict[str, Any], batch_size: int):
        super().__init__()
        self.images = validation_set["images"]
        self.labels = np.asarray(validation_set["labels"], dtype=np.int32)
        self.batch_size, self.started = batch_size, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = predict_probabilities(self.model, self.images, self.batch_size)
        logs["val_loss"] = cross_entropy(probabilities, self.labels)
        logs["val_accuracy"] = float(np.mean(predicted_labels(probabilities) == self.labels))
        learning_rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        logs["learning_rate"] = float(learning_rate)
        logs["epoch_seconds"] = time.perf_counter() - self.started


class ProgressLog(keras.callbacks.Callback):
    """One log line per epoch; inside long epochs a line every ``every_seconds`` with the
    batches done and an ETA; after the first steps, the time the whole call will take (a
    warning when that is over 10 minutes and no accelerator is in use)."""

    FORECAST_STEPS = 5  # timed after the first step, which includes compiling

    def __init__(self, epochs: int, every_seconds: float, best: float = math.inf):
        super().__init__()
        self.epochs, self.every_seconds, self.best = epochs, every_seconds, best
        self.epoch, self.started, self.last, self.first_step = 0, 0.0, 0.0, 0.0
        self.forecast = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.started = epoch, time.perf_counter()
        self.last = self.started

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now, steps, done = time.perf_counter(), self.params.get("steps") or 1, batch + 1
        if done == 1:
            self.first_step = now
        timed = min(self.FORECAST_STEPS, steps - 1)
        if self.forecast and done == 1 + timed:
            self.forecast = False
            per_step = (now - self.first_step) / timed if timed else now - self.started
            self._log_forecast(per_step * steps * (self.epochs - self.epoch))
        if now - self.last >= self.every_seconds and done < steps:
            self.last = now
            logger.info(
                "Epoch %d/%d: batch %d/%d, about %.0f s left in this epoch",
                self.epoch + 1,
                self.epochs,
                done,
                steps,
                (now - self.started) / done * (steps - done),
            )

    def _log_forecast(self, seconds: float) -> None:
        try:
            devices = keras.distribution.list_devices()
        except AttributeError:  # PyTorch: Keras has no distribution backend for it
            devices = []
        accelerated = any(not device.lower().startswith("cpu") for device in devices)
        where = "" if accelerated else " on the CPU (no GPU or TPU found)"
        level = logging.WARNING if seconds > 600 and not accelerated else logging.INFO
        left = self.epochs - self.epoch
        logger.log(
            level, "The first steps predict %.1f min for %d epoch(s)%s.", seconds / 60, left, where
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        improved, self.best = logs["val_loss"] < self.best, min(self.best, logs["val_loss"])
        keys = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
        shown = " - ".join(f"{key} {logs[key]:.4g}" for key in keys if key in logs)
        best = " (best so far)" if improved else ""
        seconds = logs["epoch_seconds"]
        logger.info("Epoch %d/%d - %.2f s - %s%s", epoch + 1, self.epochs, seconds, shown, best)


def class_weights(
    given: str | dict[str, float] | None, labels: np.ndarray, classes: Sequence[str]
) -> dict[int, float] | None:
    """Keras' ``class_weight``: ``balanced`` weighs class c by n / (classes × count of c);
    a mapping names classes (the others weigh 1)."""
    if given is None:
        return None
    if given == "balanced":
        counts = np.bincount(labels, minlength=len(classes))
        return {c: len(labels) / (len(classes) * n) for c, n in enumerate(counts.tolist()) if n}
    if unknown := sorted(set(given) - set(classes)):
        raise ValueError(f"training.class_weight names {unknown}, not classes of {list(classes)}.")
    return {list(classes).index(name): weight for name, weight in given.items()}


class AveragedWeights(keras.callbacks.Callback):
    """``training.ema``: at each epoch's end the optimizer's moving average of the weights
    goes into the model (Keras' ``finalize_variable_values``) for the callbacks after this one
    (validation, the best checkpoint); ``AveragedWeights(restore=first)``, placed before the
    backup, puts the raw weights back so training goes on from them."""

    def __init__(self, restore: "AveragedWeights | None" = None):
        super().__init__()
        self.source, self.raw = restore, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        variables = self.model.trainable_variables
        if self.source is None:
            self.raw = [keras.ops.convert_to_numpy(variable) for variable in variables]
            self.model.optimizer.finalize_variable_values(variables)
            for variable in variables:  # a copy: on JAX they'd share the average's buffer
                variable.assign(keras.ops.convert_to_numpy(variable))
        else:
            for variable, value in zip(variables, self.source.raw, strict=True):
                variable.assign(value)


def training_batches(
    model: keras.Model, train_set: dict[str, Any], training: TrainingParams
) -> ImageBatches:
    """The training split's shuffled (mixed) batches, with labels as the loss wants them."""
    labels = np.asarray(train_set["labels"], dtype=np.int32)
    return ImageBatches(
        train_set["images"],
        _labels_for(model, labels, one_hot=soft_labels(training)),
        min(training.batch_size, len(labels)),
        shuffle=True,
        seed=training.seed,
        mixup_alpha=training.mixup_alpha,
        cutmix_alpha=training.cutmix_alpha,
    )


def _labels_for(model: keras.Model, labels: np.ndarray, one_hot: bool) -> np.ndarray:
    # A sigmoid head wants float targets of its shape; a softmax indices, or one-hot rows
    # for the categorical loss (smoothing, MixUp, CutMix).
    if is_binary(model):
        return labels.astype(np.float32).reshape(-1, 1)
    if one_hot:
        return np.eye(model.output_shape[-1], dtype=np.float32)[labels]
    return labels.astype(np.int32)


def _digest(*parts: Any) -> str:
    """A short digest of the training's identity: model, parameters and data."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            sha.update(np.ascontiguousarray(part).tobytes())
        else:
            sha.update(json.dumps(part, sort_keys=True, default=str).encode())
    return sha.hexdigest()[:16]


def _data_parts(image_set: dict[str, Any]) -> list[Any]:
    # Labels, shape, classes and 4 evenly spaced images: cheap, even for a split on disk.
    images = image_set["images"]
    rows = np.unique(np.linspace(0, len(images) - 1, 4).astype(int))
    labels = np.asarray(image_set["labels"])
    return [list(images.shape), list(image_set["classes"]), labels, read_rows(images, rows)]


def _read_history(path: Path, initial_epoch: int) -> dict[str, list[float]]:
    """CSVLogger's rows from ``initial_epoch`` on; the last row of an epoch run twice wins."""
    if not path.exists():
        return {}
    with path.open(newline="") as file:
        rows = {int(row["epoch"]): row for row in csv.DictReader(file)}
    kept = [rows[epoch] for epoch in sorted(rows) if epoch >= initial_epoch]
    keys = [key for key in (kept[0] if kept else {}) if key != "epoch"]
    return {key: [float(row[key]) for row in kept] for key in keys}


def _checkpoint_folder(root: Path, model: keras.Model, *identity: Any) -> Path:
    """This training's folder under ``root``, named after a digest of ``identity``; logs
    whether a backup is resumed or another training's is ignored."""
    folder = root / f"{model.name}-{_digest(model.to_json(), *identity)}"
    if (folder / "history.csv").exists():
        logger.info("Resuming %s from its backup in %s.", model.name, folder)
    elif any(root.glob(f"{model.name}-*")):
        logger.info(
            "A backup of another training of %s is in %s (other model, parameters or data): "
            "this one starts afresh.",
            model.name,
            root,
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_splits(model: keras.Model, train_set: dict, validation_set: dict) -> None:
    check_fits(model, "train_set", train_set)
    check_fits(model, "validation_set", validation_set)
    if list(train_set["classes"]) != list(validation_set["classes"]):
        raise ValueError(
            f"train_set classes {list(train_set['classes'])} differ from validation_set "
            f"classes {list(validation_set['classes'])}; decode both splits in one run."
        )


def find_learning_rate(
    model: keras.Model, train_set: dict[str, Any], training: TrainingParams, sweep: LrFindParams
) -> dict[str, Any]:
    """Run the range test on ``model`` (compiled here with ``training``'s optimizer, loss,
    batches and recipe, at a constant rate) and put its weights back. Returns
    ``suggested_learning_rate``, ``method`` and the curve (``learning_rates``, ``losses``,
    ``smoothed_losses``)."""
    # A constant rate the callback sets, and one step per call: a callback per batch.
    constant = training.model_copy(
        update={
            "learning_rate": sweep.min_learning_rate,
            "schedule": None,
            "warmup_epochs": 0,
            "steps_per_execution": 1,
        }
    )
    weights = model.get_weights()
    compile_model(model, constant)
    batches = training_batches(model, train_set, constant)
    callback = LearningRateSweep(
        sweep.min_learning_rate,
        sweep.max_learning_rate,
        sweep.steps,
        sweep.smoothing,
        sweep.divergence,
    )
    if training.seed is not None:
        keras.utils.set_random_seed(training.seed)
    epochs = math.ceil(sweep.steps / len(batches))
    model.fit(batches, epochs=epochs, callbacks=[callback, RestoreMallocThresholds()], verbose=0)
    model.set_weights(weights)
    rates, smoothed = np.array(callback.rates), np.array(callback.smoothed)
    suggested, method = suggest_learning_rate(rates, smoothed, sweep.method)
    if suggested <= rates[0]:
        logger.warning(
            "The loss of %s never fell in the LR range test: its suggestion is the lowest rate. "
            "Lower lr_find.min_learning_rate or sweep more steps.",
            model.name,
        )
    logger.info(
        "LR range test of %s: %d steps from %.2g to %.2g%s; suggested %.3g (%s).",
        model.name,
        len(rates),
        rates[0],
        rates[-1],
        ", stopped when the loss diverged" if callback.diverged else "",
        suggested,
        method,
    )
    return {
        "suggested_learning_rate": suggested,
        "method": method,
        "diverged": callback.diverged,
        "steps_run": len(rates),
        "batch_size": batches.batch_size,
        **sweep.model_dump(exclude={"target", "method"}),
        "learning_rates": callback.rates,
        "losses": callback.losses,
        "smoothed_losses": callback.smoothed,
    }


def _resolved_learning_rate(
    model: keras.Model,
    train_set: dict[str, Any],
    training: TrainingParams,
    distribution: keras.distribution.DataParallel | None,
) -> TrainingParams:
    """``training``; for ``learning_rate: auto`` with the rate an LR range test (with
    ``lr_find``'s default settings) suggests."""
    if training.learning_rate != "auto":
        return training
    if training.epochs == 0:  # nothing to train: the default rate, no range test
        default = TrainingParams.model_fields["learning_rate"].default
        return training.model_copy(update={"learning_rate": default})
    with _scope(distribution):
        found = find_learning_rate(model, train_set, training, LrFindParams())
    rate = found["suggested_learning_rate"]
    logger.info("training.learning_rate auto: %.3g, from an LR range test.", rate)
    return training.model_copy(update={"learning_rate": rate})


def fit_model(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
    initial_epoch: int = 0,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Compile and train ``model`` (built in ``model_build_scope(training)``), resuming a
    killed run from ``training.checkpoint_dir``, then restore its best ``val_loss`` epoch.

    ``training.epochs`` epochs run after ``initial_epoch`` (fine-tuning after feature
    extraction); ``callbacks`` (e.g. live MLflow metrics) see the full epoch logs. Returns
    the model and this call's history per epoch (``HISTORY_KEYS``), across restarts too.
    Raises ``ValueError`` for empty or mismatched splits or a model that does not fit them.
    """
    _check_splits(model, train_set, validation_set)
    if training.mixed_precision and model.dtype_policy.name != MIXED_PRECISION_POLICY:
        logger.warning(
            "training.mixed_precision is on but the model was built in %s: build it inside "
            "model_build_scope(training) for mixed precision to apply.",
            model.dtype_policy.name,
        )
    images = train_set["images"]
    batch_size = training.batch_size
    if batch_size > len(images):
        batch_size = len(images)
        logger.warning("training.batch_size is larger than the %d training images.", batch_size)
        training = training.model_copy(update={"batch_size": batch_size})
    distribution = data_parallel(training)
    training = _resolved_learning_rate(model, train_set, training, distribution)
    with _scope(distribution):  # the optimizer's variables are replicated too
        compile_model(model, training, steps_per_epoch=len(images) // batch_size)
    if training.epochs == 0:
        logger.info("training.epochs is 0: the model is compiled but left untrained.")
        return model, {key: [] for key in HISTORY_KEYS}
    if training.seed is not None:
        keras.utils.set_random_seed(training.seed)

    with ExitStack() as stack:
        root = training.checkpoint_dir or stack.enter_context(tempfile.TemporaryDirectory())
        folder = _checkpoint_folder(
            Path(root),
            model,
            training.model_dump(mode="json", exclude={"checkpoint_dir", "log_every_seconds"}),
            initial_epoch,
            *_data_parts(train_set),
            *_data_parts(validation_set),
        )
        history_file = folder / "history.csv"
        done = _read_history(history_file, 0)
        best = min(done.get("val_loss", [math.inf]))
        best_weights = folder / "best.weights.h5"
        epochs = initial_epoch + training.epochs
        # Order matters: the history and best weights are written before the backup, so a
        # kill between them reruns that epoch (its CSV row is replaced) rather than losing it.
        averaged = [AveragedWeights()] if training.ema else []
        stock = [
            *averaged,  # validate and checkpoint the averaged weights
            ExactValidation(validation_set, batch_size),
            keras.callbacks.CSVLogger(str(history_file), append=True),
            keras.callbacks.ModelCheckpoint(
                str(best_weights),
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best if math.isfinite(best) else None,
            ),
        ]
        if training.early_stopping_patience is not None:
            stock.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=training.early_stopping_patience
                )
            )
        stock += [AveragedWeights(restore=first) for first in averaged]  # back to raw weights
        # double_checkpoint: a kill while the backup is written leaves the previous one.
        stock.append(
            keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True)
        )
        progress = ProgressLog(epochs, training.log_every_seconds, best)
        size = f"{model.count_params():,} parameters"
        data = f"{len(images)} images in batches of {batch_size}"
        logger.info(
            "Training %s (%s) for %d epoch(s): %s.", model.name, size, training.epochs, data
        )
        batches = training_batches(model, train_set, training)
        with _scope(distribution):
            model.fit(
                batches,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=[*stock, *callbacks, progress, RestoreMallocThresholds()],
                shuffle=False,  # ImageBatches shuffles itself
                class_weight=class_weights(
                    training.class_weight, np.asarray(train_set["labels"]), train_set["classes"]
                ),
                # Keras' progress bar on a terminal; ProgressLog's lines everywhere.
                verbose=1 if sys.stdout.isatty() else 0,
            )
        history = _read_history(history_file, initial_epoch)
        if best_weights.exists():
            model.load_weights(best_weights)
            best_epoch = int(np.argmin(history["val_loss"]))
            loss = history["val_loss"][best_epoch]
            logger.info("Restored epoch %d (val_loss %.4f).", initial_epoch + best_epoch + 1, loss)
        else:
            logger.warning("val_loss never improved (NaN?); keeping the last epoch's weights.")
        shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):  # the checkpoints folder too, when no other backup is left
            Path(root).rmdir()
    return model, history
