"""What kedro-mlflow's catalog entries and ``hooks.py`` need: the ``mlflow.yml`` resolvers,
``prepare_store``, run tags, image sets as MLflow datasets and ``metric_history``; and the
Keras callback that streams each epoch's metrics to the model's run."""

import logging
import numbers
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import keras
import mlflow
import numpy as np
from filelock import FileLock
from kedro.utils import find_kedro_project
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from mlflow.entities import Metric
from mlflow.environment_variables import MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from image_classifiers.core.data.extract import HOST, process_gone
from image_classifiers.core.evaluation import image_set_digest
from image_classifiers.datasets.atomic import published_folder

logger = logging.getLogger(__name__)

_SQLITE_PREFIX = "sqlite:///"
_NUMBER = int | float | np.integer | np.floating  # what MLflow takes as a metric (not a bool)


def sqlite_store(file_name: str = "mlflow.db") -> str:
    """Resolver ``${sqlite_store:mlflow.db}``: a SQLite store at the project root (found as
    ``kedro`` finds it, so a notebook in ``notebooks/`` uses the same store)."""
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return f"{_SQLITE_PREFIX}{(root / file_name).resolve().as_posix()}"


def sqlite_file(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for a server or memory)."""
    if not uri or not uri.startswith(_SQLITE_PREFIX):
        return None
    path = unquote(uri[len(_SQLITE_PREFIX) :])
    return None if path in ("", ":memory:") else Path(path)


def artifacts_beside(uri: str | None) -> str | None:
    """Resolver ``${artifacts_beside:<uri>}``: ``mlartifacts/`` beside a SQLite store's file
    (MLflow would use ``./mlruns`` of the working directory); ``None`` for a server."""
    database = sqlite_file(uri)
    return None if database is None else (database.resolve().parent / "mlartifacts").as_posix()


def prepare_store(mlflow_conf: dict[str, Any], context: Any) -> None:
    """Create the store and experiment before kedro-mlflow, safe for runs started at once: on a
    new SQLite store (two runs would both migrate it) kedro-mlflow's setup runs under a file
    lock; on a server, "already exists" counts as success (mlflow/mlflow#4123)."""
    config = KedroMlflowConfig.model_validate(mlflow_conf)
    # kedro-mlflow reads MLFLOW_TRACKING_URI when mlflow.yml leaves the URI empty.
    uri = config.server.mlflow_tracking_uri or MLFLOW_TRACKING_URI.get()
    if str(uri).startswith(("http://", "https://")):
        experiment = config.tracking.experiment
        try:
            ensure_experiment(uri, experiment.name, experiment.create_experiment_kwargs.tags)
        except MlflowException as exc:  # e.g. credentials kedro-mlflow sets only later
            logger.debug("Could not create the experiment ahead of kedro-mlflow: %s", exc)
    elif (database := sqlite_file(uri)) is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{database}.lock"):
            config.setup(context)


def ensure_experiment(uri: str, name: str, tags: dict[str, Any] | None = None) -> None:
    """Create experiment ``name`` on the server at ``uri`` unless it exists (race-free)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(name, tags=tags)  # the server's own artifact location
        logger.info("Created MLflow experiment '%s' on %s.", name, uri)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def close_killed_runs(experiment_id: str) -> None:
    """Mark KILLED the runs of the experiment left RUNNING by a process of this host that is
    gone (``kill -9``): its ``host`` and ``pid`` tags name the process (``process_tags``)."""
    client = mlflow.MlflowClient()
    query = f"attributes.status = 'RUNNING' and tags.host = '{HOST}'"
    for run in client.search_runs([experiment_id], query, max_results=1000):
        pid = run.data.tags.get("pid", "")
        if pid.isdigit() and process_gone(int(pid), run.info.start_time / 1000):
            client.set_terminated(run.info.run_id, "KILLED")
            logger.warning(
                "MLflow run '%s' (%s) was left running by a killed process; marked KILLED.",
                run.info.run_name,
                run.info.run_id,
            )


def process_tags() -> dict[str, str]:
    """The ``host`` and ``pid`` tags that let ``close_killed_runs`` tell a killed run."""
    return {"host": HOST, "pid": str(os.getpid())}


def git_commit(project_path: Path) -> dict[str, str]:
    """The project's git commit (the tag the MLflow UI shows) and whether the tree is dirty."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(project_path), *args]
        return subprocess.check_output(command, stderr=subprocess.DEVNULL, text=True, timeout=10)

    try:
        sha, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        logger.debug("No git commit to tag: '%s' is not a git checkout.", project_path)
        return {}
    return {"mlflow.source.git.commit": sha.strip(), "git_dirty": str(bool(status.strip())).lower()}


def environment_tags() -> dict[str, str]:
    """Tags of every model run: Keras version and backend, and the first compute device."""
    import keras

    return {
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "device": keras.distribution.list_devices()[0],  # e.g. "cpu:0", "gpu:0"
    }


def flatten_params(params: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values), as kedro-mlflow logs them."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten_params(value, name, sep))
        else:
            flat[name] = value
    return flat


def metric_history(metrics: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """``metrics`` as ``MlflowMetricsHistoryDataset`` saves them: a number is step 0, a list
    of numbers one step per element; anything else (a confusion matrix) stays in the file."""
    history = {}
    for key, value in metrics.items():
        values = value if isinstance(value, list | tuple) else [value]
        if values and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in values):
            history[key] = [{"value": float(v), "step": step} for step, v in enumerate(values)]
    return history


# Context of an MLflow dataset input, from the split in its catalog name ("train_set", ...).
_SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}
# How SQL stores word a unique-key clash (PostgreSQL, SQLite, MySQL).
_DUPLICATE_KEY = ("UniqueViolation", "UNIQUE constraint failed", "Duplicate entry")


def is_image_set(value: Any) -> bool:
    """Whether a node input is a decoded image set (``ImageSetDataset``)."""
    return isinstance(value, dict) and "images" in value and "labels" in value


def image_set_input(name: str, image_set: dict[str, Any]) -> tuple[Any, str]:
    """A decoded image set as an MLflow dataset and its context (training, testing...); the
    digest hashes every pixel and label (about 0.5 s per 200 MB): same digest, same data."""
    images, labels = image_set["images"], np.asarray(image_set["labels"])
    filename = getattr(images, "filename", None)
    with warnings.catch_warnings():
        # MLflow registers two equivalent sources for local paths and warns about its choice.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = mlflow.data.from_numpy(
            images,
            targets=labels,
            name=name,
            digest=image_set_digest(image_set),
            source=published_folder(Path(filename).parent).as_posix() if filename else None,
        )
    split = name.rsplit(".", 1)[-1].removesuffix("_set")
    return dataset, _SPLIT_CONTEXTS.get(split, split)


def log_image_set(dataset: Any, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input``, retried: MLflow's SQL store looks a dataset up, then inserts it,
    without a lock, so a second run's insert can fail on the unique key (seen on PostgreSQL)."""
    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as error:
            if attempt == attempts or not any(key in str(error) for key in _DUPLICATE_KEY):
                raise
            logger.info("Dataset %s was logged by another run meanwhile; linking it.", dataset.name)
            time.sleep(0.1 * attempt)


class TrackingStoreLost(RuntimeError):
    """The SQLite tracking store was deleted while a run wrote to it."""


# Why not mlflow.keras.MlflowCallback: it logs asynchronously (a watcher sees an epoch late),
# and logs the optimizer's settings as params at every fit, which MLflow refuses the second
# time (transfer learning fits twice in one run, with another learning rate).
class MlflowEpochMetrics(keras.callbacks.Callback):
    """Logs each epoch's numeric logs (step: the epoch, from 0) to the MLflow run active
    when training began, synchronously. Without an active run it does nothing; if the store
    cannot be written it says so once and stops logging, not training, unless the store's
    file is gone (``TrackingStoreLost``): then nothing of the run could be recorded."""

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
            if (database := sqlite_file(mlflow.get_tracking_uri())) and not database.exists():
                raise TrackingStoreLost(
                    f"The MLflow store {database} was deleted during the run: nothing more "
                    "can be recorded, so training stops, and the model files stay as they were. "
                    "Run again: training resumes after the last finished epoch."
                ) from None
            logger.warning(
                "Could not log epoch %d's metrics to MLflow (%s); training goes on without "
                "live metrics.",
                epoch + 1,
                error,
            )
            self.run_id = None
