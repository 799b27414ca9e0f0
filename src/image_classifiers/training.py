"""Compile and train Keras 3 classifiers on decoded image sets, fast on an accelerator.

Why the input pipeline looks the way it does:

- The decoded splits are read one batch at a time from their memory-mapped ``.npy`` files
  (never copied whole into RAM, so a split may be larger than memory; the OS page cache
  keeps a split that fits in RAM there after the first epoch): no JPEG decoding, no
  ``tf.data``, any backend.
- Batches stay uint8 until they reach the model (whose first layer rescales), which moves a
  quarter of the bytes a float32 copy would.
- Every batch has the same shape, so XLA compiles each step once: training drops the last
  partial batch (reshuffling every epoch, so a different few images sit out each time) and
  inference pads its last batch and discards the padding. A partial batch would otherwise
  cost a second compile (tens of seconds on a GPU) for a handful of images.
- On TensorFlow, Keras feeds a ``PyDataset`` through ``tf.data.Dataset.from_generator``,
  which sets a process-wide malloc threshold that doubles CPU epoch times;
  ``host_memory.RestoreMallocThresholds`` (a callback on every ``fit`` and ``predict``
  here) undoes it.
- Validation runs through ``predict`` on those padded batches and the loss and accuracy are
  computed on the host, so the numbers are exact and one compiled inference step serves
  validation and test evaluation.
- ``training.distribution`` (``auto`` | ``none`` | ``data_parallel``) trains on every local
  accelerator with ``keras.distribution.DataParallel`` (JAX backend): the variables are
  replicated when the model is built (``model_build_scope``), each global batch of
  ``batch_size`` is split evenly across the devices, and the batch shape stays fixed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import keras
import numpy as np

from image_classifiers.host_memory import RestoreMallocThresholds
from image_classifiers.images import read_rows
from image_classifiers.params import TrainingParams

logger = logging.getLogger(__name__)

OPTIMIZERS = {
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")
MIXED_PRECISION_POLICY = "mixed_bfloat16"
# The training options (keys, defaults, allowed values): image_classifiers.params.TrainingParams.
Training = TrainingParams | Mapping[str, Any] | None


def data_parallel(training: Training) -> keras.distribution.DataParallel | None:
    """The ``keras.distribution`` to train under, as ``training.distribution`` asks.

    ``auto`` uses every local device when there are several and the backend is JAX (the one
    Keras distributes), ``none`` one device, ``data_parallel`` every device or an error.
    Several hosts: call ``keras.distribution.initialize()`` in every process first (see
    docs/scaling.md); ``list_devices`` then lists the devices of all hosts.

    Returns:
        A ``DataParallel`` over all devices, or ``None`` for plain one-device training.

    Raises:
        ValueError: ``data_parallel`` on a backend other than JAX, or a ``batch_size`` that
            the devices cannot split evenly.
    """
    options = TrainingParams.coerce(training)
    choice = options.distribution
    if choice == "none":
        return None
    if keras.backend.backend() != "jax":
        if choice == "data_parallel":
            raise ValueError(
                f"training.distribution=data_parallel needs the JAX backend; Keras cannot "
                f"distribute training on {keras.backend.backend()}. Run with "
                "KERAS_BACKEND=jax, or set training.distribution to auto or none."
            )
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2 and choice == "auto":
        return None
    if options.batch_size % len(devices):
        raise ValueError(
            f"training.batch_size {options.batch_size} cannot be split evenly across "
            f"{len(devices)} devices: use a multiple of {len(devices)} (the global batch)."
        )
    return keras.distribution.DataParallel(devices=devices)


@contextmanager
def _distribution_scope(
    distribution: keras.distribution.DataParallel | None,
) -> Iterator[None]:
    with ExitStack() as stack:
        if distribution is not None:
            stack.enter_context(distribution.scope())
        yield


@contextmanager
def model_build_scope(training: Training) -> Iterator[None]:
    """Build models inside this block so the training options that act at build time apply.

    The seed fixes the initial weights and the layers' random streams (dropout,
    augmentation); mixed precision is a per-layer dtype policy that Keras fixes when a layer
    is created, so it cannot be switched on later in ``fit_model``. The previous global
    policy is restored on exit so that later models are not affected by accident.

    Args:
        training: The ``training:`` parameters (``seed``, ``mixed_precision``); a dict may
            give only some keys.
    """
    options = TrainingParams.coerce(training)
    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    previous = keras.config.dtype_policy()
    if options.mixed_precision:
        keras.config.set_dtype_policy(MIXED_PRECISION_POLICY)
    try:
        # Under data parallelism, variables are created replicated on every device.
        with _distribution_scope(data_parallel(options)):
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def is_binary(model: keras.Model) -> bool:
    """Whether ``model`` ends in one sigmoid unit (two classes) rather than a softmax."""
    return model.output_shape[-1] == 1


def compile_model(
    model: keras.Model, training: Training, steps_per_epoch: int | None = None
) -> keras.Model:
    """Compile ``model`` with the optimizer, learning rate and loss the parameters ask for.

    The loss follows the head: binary cross-entropy for one sigmoid unit, sparse
    categorical cross-entropy (integer labels) for a softmax.

    Args:
        model: An uncompiled or compiled model; it is (re)compiled in place.
        training: The ``training:`` parameters (a dict may give only some keys).
        steps_per_epoch: Optimizer steps per epoch; needed by the cosine schedule, which
            decays over ``epochs * steps_per_epoch`` steps (``fit_model`` passes it).

    Returns:
        The same model, compiled.

    Raises:
        pydantic.ValidationError: For an unknown optimizer or schedule, or bad values.
        ValueError: For the cosine schedule without ``steps_per_epoch``.
    """
    options = TrainingParams.coerce(training)
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = options.learning_rate
    if options.schedule == "cosine":
        if steps_per_epoch is None:
            raise ValueError(
                "training.schedule 'cosine' needs the number of steps per epoch: pass "
                "steps_per_epoch to compile_model (fit_model does this for you)."
            )
        warmup_steps = options.warmup_epochs * steps_per_epoch
        decay_steps = max(1, options.epochs * steps_per_epoch - warmup_steps)
        if warmup_steps:
            # Linear from 0 to learning_rate over the warm-up, then the cosine decay.
            learning_rate = keras.optimizers.schedules.CosineDecay(
                0.0,
                decay_steps=decay_steps,
                warmup_target=options.learning_rate,
                warmup_steps=warmup_steps,
            )
        else:
            learning_rate = keras.optimizers.schedules.CosineDecay(
                options.learning_rate, decay_steps=decay_steps
            )
    optimizer_kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if options.weight_decay is not None:
        optimizer_kwargs["weight_decay"] = options.weight_decay
    optimizer = OPTIMIZERS[options.optimizer](**optimizer_kwargs)
    model.compile(
        optimizer=optimizer,
        loss=training_loss(model, options.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=options.steps_per_execution,
    )
    return model


def training_loss(model: keras.Model, label_smoothing: float = 0.0) -> str | keras.losses.Loss:
    """The loss that fits the head, with optional label smoothing.

    Binary cross-entropy for one sigmoid unit; for a softmax, sparse categorical
    cross-entropy on integer labels, or categorical cross-entropy on one-hot labels when
    smoothing (the sparse loss has no smoothing; ``fit_model`` one-hot encodes the labels).
    """
    if not label_smoothing:
        return "binary_crossentropy" if is_binary(model) else "sparse_categorical_crossentropy"
    if is_binary(model):
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


class ImageBatches(keras.utils.PyDataset):
    """Fixed-size batches of uint8 images (and labels), read from arrays or memory maps.

    For training (``shuffle=True``) the order is reshuffled every epoch and the last
    partial batch is dropped; for inference the order is kept and the last batch is padded
    with black images, which ``predict_probabilities`` cuts off again.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
    ):
        super().__init__()
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.training = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(images)) if shuffle else None

    def __len__(self) -> int:
        if self.training:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        start = index * self.batch_size
        if self.training:
            rows = np.sort(self._order[start : start + self.batch_size])
            return read_rows(self.images, rows), self.labels[rows]
        images = read_rows(self.images, slice(start, start + self.batch_size))
        missing = self.batch_size - len(images)
        if missing:
            padding = np.zeros((missing, *images.shape[1:]), dtype=images.dtype)
            images = np.concatenate([images, padding])
        return (images,)

    def on_epoch_end(self) -> None:
        if self.training:
            self._order = self._rng.permutation(len(self.images))


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 32, flip_average: bool = False
) -> np.ndarray:
    """Class probabilities for every image, in batches of one fixed shape.

    Args:
        model: A classifier taking raw uint8 images.
        images: uint8 array (N, H, W, C).
        batch_size: Images per inference step.
        flip_average: Test-time augmentation: average the probabilities of each image and
            its left-right mirror image (twice the inference work).

    Returns:
        float32 array (N, num_classes); a one-unit sigmoid head gives columns (1 - p, p).
    """
    if len(images) == 0:
        return np.zeros((0, max(2, model.output_shape[-1])), dtype=np.float32)

    def predict(pixels: np.ndarray) -> np.ndarray:
        outputs = model.predict(
            ImageBatches(pixels, None, batch_size),
            verbose=0,
            callbacks=[RestoreMallocThresholds()],
        )
        # bfloat16 outputs under mixed precision: compute metrics in float32; drop the padding.
        return np.asarray(outputs, dtype=np.float32)[: len(images)]

    probabilities = predict(images)
    if flip_average:
        probabilities = (probabilities + predict(images[:, :, ::-1])) / 2
    if probabilities.shape[-1] == 1:
        probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer ``labels`` under ``probabilities`` (N, num_classes).

    Clipped like Keras' losses, so it matches the training loss.
    """
    epsilon = keras.config.epsilon()
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, epsilon, 1.0 - epsilon))))


def predicted_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class indices; with two classes the second wins above ``threshold``."""
    if probabilities.shape[-1] == 2:
        return (probabilities[:, 1] > threshold).astype(np.int32)
    return np.argmax(probabilities, axis=-1).astype(np.int32)


def check_image_set(name: str, image_set: dict[str, Any]) -> None:
    """Raise a clear error if ``image_set`` is not a usable, non-empty decoded split.

    Args:
        name: The split's name, for the message (e.g. ``"train_set"``).
        image_set: ``{"images", "labels", "classes", ...}`` as ImageSetDataset loads it.

    Raises:
        ValueError: If keys are missing, the split is empty, or shapes or labels don't fit.
    """
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
    num_classes = len(image_set["classes"])
    if num_classes < 2 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"{name} labels must be class indices in [0, {num_classes}) for classes "
            f"{list(image_set['classes'])}, got range [{labels.min()}, {labels.max()}]."
        )


def _check_compatible(
    model: keras.Model, train_set: dict[str, Any], validation_set: dict[str, Any]
) -> None:
    check_image_set("train_set", train_set)
    check_image_set("validation_set", validation_set)
    if list(train_set["classes"]) != list(validation_set["classes"]):
        raise ValueError(
            f"train_set classes {list(train_set['classes'])} differ from validation_set "
            f"classes {list(validation_set['classes'])}; decode both splits in one run."
        )
    for name, image_set in (("train_set", train_set), ("validation_set", validation_set)):
        if tuple(image_set["images"].shape[1:]) != tuple(model.input_shape[1:]):
            raise ValueError(
                f"The model takes images of shape {tuple(model.input_shape[1:])} but "
                f"{name} holds {tuple(image_set['images'].shape[1:])}: rebuild the model "
                "for this data (build_model) or decode the data at the model's size."
            )
    units = model.output_shape[-1]
    num_classes = len(train_set["classes"])
    # One sigmoid unit for two classes, or one softmax unit per class.
    if units not in {num_classes, 1 if num_classes == 2 else num_classes}:
        raise ValueError(
            f"The model predicts {units} unit(s) but the data has {num_classes} classes; "
            "rebuild the model for this data."
        )


class _EpochMonitor(keras.callbacks.Callback):
    """Per epoch: exact validation loss/accuracy, best weights kept, one log line.

    It must come first among the callbacks: it adds ``val_loss`` (read by EarlyStopping),
    ``learning_rate`` and ``epoch_seconds`` to the epoch logs that ``History`` records.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int):
        super().__init__()
        self.images, self.labels = images, labels
        self.batch_size, self.epochs = batch_size, epochs
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        probabilities = predict_probabilities(self.model, self.images, self.batch_size)
        logs["val_loss"] = cross_entropy(probabilities, self.labels)
        logs["val_accuracy"] = float(np.mean(predicted_labels(probabilities) == self.labels))
        learning_rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(learning_rate))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        improved = logs["val_loss"] < self.best_loss
        if improved:
            self.best_loss, self.best_epoch = logs["val_loss"], epoch
            # A host copy: the .keras file is written once, at the end, by the catalog.
            self.best_weights = self.model.get_weights()
        logger.info(
            "Epoch %d/%d - %.2f s - loss %.4f - accuracy %.4f - val_loss %.4f - "
            "val_accuracy %.4f - lr %.3g%s",
            epoch + 1,
            self.epochs,
            logs["epoch_seconds"],
            logs.get("loss", math.nan),
            logs.get("accuracy", math.nan),
            logs["val_loss"],
            logs["val_accuracy"],
            logs["learning_rate"],
            " (best so far)" if improved else "",
        )


def _labels_for(model: keras.Model, labels: np.ndarray, one_hot: bool = False) -> np.ndarray:
    # A one-unit sigmoid head wants float targets of its own shape; a softmax wants indices,
    # or one-hot rows for the smoothed categorical loss.
    if is_binary(model):
        return labels.astype(np.float32).reshape(-1, 1)
    if one_hot:
        return np.eye(model.output_shape[-1], dtype=np.float32)[labels]
    return labels.astype(np.int32)


def fit_model(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: Training,
    initial_epoch: int = 0,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Compile and train ``model``, then restore the weights of its best ``val_loss`` epoch.

    The model is always (re)compiled with ``compile_model`` so that the parameters, not a
    previous compile, decide the optimizer (which also makes freezing/unfreezing layers
    between two calls take effect). Build the model inside ``model_build_scope(training)``
    for the seed and mixed precision to apply to its weights and layers.

    Args:
        model: A classifier taking raw uint8 images of the split's shape.
        train_set: Decoded training split (``ImageSetDataset``).
        validation_set: Decoded validation split; picks the best epoch.
        training: The ``training:`` parameters (a dict may give only some keys). ``epochs``
            is the number of epochs this call runs (0 leaves the model untrained but
            compiled).
        initial_epoch: Number of epochs already run on this model (e.g. before fine-tuning);
            only shifts the epoch numbers in the logs.

    Returns:
        The model (best weights restored) and its history: lists per epoch of ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``, ``epoch_seconds``.

    Raises:
        ValueError: For bad parameters, empty or mismatched splits, or a model that doesn't
            fit the data.
    """
    options = TrainingParams.coerce(training)
    _check_compatible(model, train_set, validation_set)
    if options.mixed_precision and model.dtype_policy.name != MIXED_PRECISION_POLICY:
        logger.warning(
            "training.mixed_precision is on but the model was built in %s: build it inside "
            "model_build_scope(training) (as build_model does) for mixed precision to apply.",
            model.dtype_policy.name,
        )
    # Not copied: batches are read from the (memory-mapped) split as they are needed.
    train_images = train_set["images"]
    train_labels = np.asarray(train_set["labels"], dtype=np.int32)
    batch_size = options.batch_size
    if batch_size > len(train_images):
        logger.warning(
            "training.batch_size %d is larger than the %d training images; using batches of %d.",
            batch_size,
            len(train_images),
            len(train_images),
        )
        batch_size = len(train_images)
    steps_per_epoch = len(train_images) // batch_size
    distribution = data_parallel(options.model_copy(update={"batch_size": batch_size}))
    with _distribution_scope(distribution):  # the optimizer's variables too are replicated
        compile_model(model, options, steps_per_epoch=steps_per_epoch)
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    epochs = options.epochs
    if epochs == 0:
        logger.info("training.epochs is 0: the model is compiled but left untrained.")
        return model, history

    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    if distribution is not None:
        logger.info(
            "Data parallel on %d devices: each batch of %d is split into %d per device.",
            distribution.num_model_replicas,
            batch_size,
            batch_size // distribution.num_model_replicas,
        )
    monitor = _EpochMonitor(
        validation_set["images"],
        np.asarray(validation_set["labels"], dtype=np.int32),
        batch_size,
        initial_epoch + epochs,
    )
    # Imported here, not at the top: the serving model imports this module for
    # predict_probabilities in an environment without Kedro (live_metrics imports tracking).
    from image_classifiers.live_metrics import MlflowEpochMetrics

    # After the monitor: the live metrics include the val_loss, ... it adds to the logs.
    # RestoreMallocThresholds: TensorFlow's PyDataset input would otherwise halve CPU speed.
    extra = list(callbacks)
    if not any(isinstance(callback, MlflowEpochMetrics) for callback in extra):
        extra.append(MlflowEpochMetrics())
    callbacks = [monitor, *extra, RestoreMallocThresholds()]
    if options.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=options.early_stopping_patience
            )
        )
    logger.info(
        "Training %s (%s parameters) for %d epoch(s): %d images in %d batches of %d, "
        "%d validation images, optimizer %s.",
        model.name,
        f"{model.count_params():,}",
        epochs,
        len(train_images),
        steps_per_epoch,
        batch_size,
        len(monitor.images),
        options.optimizer,
    )
    batches = ImageBatches(
        train_images,
        _labels_for(model, train_labels, one_hot=options.label_smoothing > 0),
        batch_size,
        shuffle=True,
        seed=options.seed,
    )
    with _distribution_scope(distribution):
        fitted = model.fit(
            batches,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # ImageBatches reshuffles images itself; keep its batch order
            verbose=0,
        )
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
        logger.info(
            "Restored the weights of epoch %d (val_loss %.4f).",
            monitor.best_epoch + 1,
            monitor.best_loss,
        )
    else:
        logger.warning("val_loss never improved (NaN?); keeping the last epoch's weights.")
    for key, values in fitted.history.items():
        history[key] = [float(value) for value in values]
    return model, history
