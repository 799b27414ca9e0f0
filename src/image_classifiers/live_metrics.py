"""Per-epoch metrics sent to MLflow as each epoch ends, so a run can be watched as it trains."""

from __future__ import annotations

import logging
import time

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from image_classifiers.tracking import is_number

logger = logging.getLogger(__name__)


class MlflowEpochMetrics(keras.callbacks.Callback):
    """Logs each epoch's numeric logs to the MLflow run active when training began.

    Step: the epoch (from 0; a later ``fit`` with ``initial_epoch`` continues the count).
    Timestamp: when the epoch ended. Written synchronously, so ``get_metric_history``
    shows an epoch as soon as it ends. Put it after the callbacks that add to the epoch
    logs (``training._EpochMonitor``). Without an active run it does nothing; if the store
    cannot be written it says so once and stops logging, never the training.
    """

    def __init__(self) -> None:
        super().__init__()
        self._run_id: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run is not None else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._run_id is None or not logs:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, epoch) for key, v in logs.items() if is_number(v)]
        try:
            mlflow.MlflowClient().log_batch(self._run_id, metrics=metrics)
        except (MlflowException, OSError) as exc:
            logger.warning(
                "Could not log epoch %d's metrics to MLflow (%s); training goes on without "
                "live metrics.",
                epoch + 1,
                exc,
            )
            self._run_id = None
