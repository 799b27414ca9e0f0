"""The learning-rate range test (Smith, 2017; fastai's ``lr_find``): train a few hundred
batches while the rate grows exponentially, record each batch's loss, stop once the loss
diverges, and suggest a rate from the smoothed loss curve. The model's weights are put back.
"""

import logging
import math
from typing import Any

import keras
import numpy as np

from image_classifiers.core.host_memory import RestoreMallocThresholds
from image_classifiers.core.params import LrFindParams, TrainingParams
from image_classifiers.core.training import compile_model, training_batches

logger = logging.getLogger(__name__)

METHODS = {
    "steepest": "steepest descent of the smoothed loss against log(rate), before its minimum",
    "minimum": "the rate at the smoothed loss' minimum, divided by 10",
}


class LearningRateSweep(keras.callbacks.Callback):
    """Sets the rate before each batch (``min_rate * (max_rate / min_rate) ** (i / (steps -
    1))``), records each batch's loss and its bias-corrected moving average (``smoothing``),
    and stops training after ``steps`` batches, a non-finite loss, or a smoothed loss above
    ``divergence`` times its minimum."""

    def __init__(
        self,
        min_rate: float,
        max_rate: float,
        steps: int,
        smoothing: float = 0.9,
        divergence: float = 4.0,
    ):
        super().__init__()
        self.schedule = np.geomspace(min_rate, max_rate, steps)
        self.smoothing, self.divergence = smoothing, divergence
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.diverged, self.average, self.epoch_mean = False, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_mean = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate = float(self.schedule[len(self.losses)])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Keras logs the epoch's running mean (batches of one size): this batch's own loss is
        # what it added to that mean.
        mean = float(logs["loss"])
        loss, self.epoch_mean = (batch + 1) * mean - batch * self.epoch_mean, mean
        self.rates.append(float(self.schedule[len(self.losses)]))
        self.losses.append(loss)
        self.average = self.smoothing * self.average + (1 - self.smoothing) * loss
        self.smoothed.append(self.average / (1 - self.smoothing ** len(self.losses)))
        self.diverged = not math.isfinite(loss) or (
            self.smoothed[-1] > self.divergence * min(self.smoothed)
        )
        if self.diverged or len(self.losses) == len(self.schedule):
            self.model.stop_training = True


def suggest_learning_rate(
    rates: np.ndarray, smoothed: np.ndarray, method: str = "steepest"
) -> tuple[float, str]:
    """The suggested rate and how it was found (``METHODS``). ``steepest`` skips the first
    tenth (the average has seen few losses) and measures each slope over a fifth of the way
    down to the minimum, so noise does not win; too short a descent falls back to
    ``minimum``."""
    finite = np.isfinite(smoothed)
    rates, smoothed = rates[finite], smoothed[finite]
    if len(rates) == 0:
        raise ValueError("The LR range test recorded no finite loss: lower min_learning_rate.")
    lowest, skip = int(np.argmin(smoothed)), len(rates) // 10
    if method == "steepest" and lowest - skip >= 5:
        span = (lowest - skip) // 5
        # Equal steps in log(rate): the drop over ``span`` points is the slope.
        drops = smoothed[skip + span : lowest + 1] - smoothed[skip : lowest + 1 - span]
        return float(rates[skip + int(np.argmin(drops)) + span // 2]), METHODS["steepest"]
    return float(max(rates[lowest] / 10, rates[0])), METHODS["minimum"]


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
