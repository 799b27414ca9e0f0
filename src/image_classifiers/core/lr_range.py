"""The learning-rate range test (Smith, 2017; fastai's ``lr_find``): train a few hundred
batches while the rate grows exponentially, record each batch's loss, stop once the loss
diverges, and suggest a rate from the smoothed loss curve. ``core.training.find_learning_rate``
runs it with a model's training recipe and puts the model's weights back.
"""

import math

import keras
import numpy as np

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
