"""Per-epoch metrics sent to MLflow as each epoch ends, so a run can be watched as it trains.

Why not ``mlflow.keras.MlflowCallback``: it logs asynchronously (a watcher sees an epoch late),
and it logs the optimizer's settings as params at every ``fit``, which MLflow refuses the
second time (transfer learning fits twice in one run, with another learning rate).
"""

from __future__ import annotations

import logging
import numbers
import time

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)


class MlflowEpochMetrics(keras.callbacks.Callback):
    """Logs each epoch's numeric logs (step: the epoch, from 0) to the MLflow run active
    when training began, synchronously. Without an active run it does nothing; if the store
    cannot be written it says so once and stops logging, never the training."""

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        run = mlflow.active_run()
        self.run_id = run.info.run_id if run is not None else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.run_id is None or not logs:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch)
            for key, value in logs.items()
            if isinstance(value, numbers.Real)
        ]
        try:
            mlflow.MlflowClient().log_batch(self.run_id, metrics=metrics)
        except (MlflowException, OSError) as error:
            logger.warning(
                "Could not log epoch %d's metrics to MLflow (%s); training goes on without "
                "live metrics.",
                epoch + 1,
                error,
            )
            self.run_id = None
