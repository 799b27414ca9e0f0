"""MLflow tracking helpers and the catalog datasets kedro-mlflow does not provide.

kedro-mlflow (configured in ``conf/base/mlflow.yml``) opens one MLflow run per ``kedro run``,
logs node parameters and saves its ``Mlflow*`` datasets to the active run. This module adds:

* Two config resolvers for ``mlflow.yml`` (registered in ``settings.py``):
  ``${sqlite_store:mlflow.db}``, a SQLite store at the project root, and
  ``${artifacts_beside:<uri>}``, the folder ``mlartifacts`` beside a SQLite store's file;
  and ``create_store``, which creates a SQLite store under a file lock (``hooks.py``).
* Run tags, and ``log_image_sets``: the splits a model saw, as MLflow datasets.
* ``MlflowJSONMetricsDataset`` -- a JSON file like ``json.JSONDataset`` that, when a dict
  of numbers is saved, also logs it as MLflow metrics: a number becomes one metric, a list
  of numbers a metric history with one step per element. kedro-mlflow's metric datasets
  need another layout and keep no file.
* ``MlflowFigureDataset`` and ``MlflowCSVDataset`` -- matplotlib figures and CSV files
  that are also logged as artifacts, like kedro-mlflow's ``MlflowArtifactDataset`` but
  without opening a stray run when saved outside ``kedro run`` (see ``active_run_id``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import mlflow
import numpy as np
from filelock import FileLock
from kedro.io import DatasetError
from kedro.utils import find_kedro_project
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from image_classifiers.datasets.atomic import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
)

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = "mlartifacts"
TRACKING_URI_VAR = "MLFLOW_TRACKING_URI"
_SQLITE_PREFIX = "sqlite:///"


# ---- tracking store --------------------------------------------------------------------
def sqlite_store(file_name: str = "mlflow.db") -> str:
    """Resolver ``${sqlite_store:mlflow.db}``: a SQLite store file at the project root.

    The project is found from the working directory, as the ``kedro`` command finds it, so
    that ``kedro run`` from a sub-folder or a notebook in ``notebooks/`` uses the same store.
    """
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return f"{_SQLITE_PREFIX}{(root / file_name).resolve().as_posix()}"


def sqlite_file(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for a server or memory)."""
    if not uri or not uri.startswith(_SQLITE_PREFIX):
        return None
    path = unquote(uri[len(_SQLITE_PREFIX) :])
    return None if path in ("", ":memory:") else Path(path)


def artifacts_beside(uri: str | None) -> str | None:
    """Resolver ``${artifacts_beside:<uri>}``: ``mlartifacts/`` beside a SQLite store's file.

    MLflow would put a SQLite store's artifacts in ``./mlruns`` of the working directory;
    ``None`` for a server, which decides its own artifact location.
    """
    database = sqlite_file(uri)
    return None if database is None else (database.resolve().parent / ARTIFACTS_DIR).as_posix()


def create_store(mlflow_conf: dict[str, Any], context: Any) -> None:
    """Create (or open) a SQLite store and its experiment under a file lock.

    Two ``kedro run`` started at once on a fresh store would both create MLflow's tables
    (alembic migrations) and the experiment, and one of them fail. Under the lock, the
    first creates them with kedro-mlflow's own setup; the second then finds them.
    A server serialises this itself: nothing to do.

    Args:
        mlflow_conf: The merged ``mlflow`` configuration, as kedro-mlflow reads it.
        context: The Kedro context (kedro-mlflow's setup reads its credentials).
    """
    config = KedroMlflowConfig.model_validate(mlflow_conf)
    # kedro-mlflow reads MLFLOW_TRACKING_URI when mlflow.yml leaves the URI empty.
    database = sqlite_file(config.server.mlflow_tracking_uri or os.environ.get(TRACKING_URI_VAR))
    if database is None:
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database}.lock"):
        config.setup(context)


# ---- run tags ----------------------------------------------------------------------------
def git_commit(project_path: Path) -> dict[str, str]:
    """The project's git commit (and whether the working tree has changes), if it is a repo."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        logger.debug("No git commit to tag: '%s' is not a git checkout.", project_path)
        return {}
    # mlflow.source.git.commit is the tag the MLflow UI shows as the run's version.
    return {"mlflow.source.git.commit": sha, "git_dirty": str(bool(status.strip())).lower()}


def describe_device() -> str:
    """Where the current Keras backend computes, e.g. ``"cpu"`` or ``"gpu:NVIDIA H100"``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return "cpu" if device.platform == "cpu" else f"{device.platform}:{device.device_kind}"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"gpu:{torch.cuda.get_device_name(0)}"
            return "cpu"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return "cpu"
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
            return f"gpu:{name or len(gpus)}"
    except Exception as exc:  # a tag must never fail a training run
        logger.debug("Could not describe the %s device: %s", backend, exc)
    return "unknown"


def environment_tags() -> dict[str, str]:
    """Tags every training run gets: Keras version and backend, and the compute device."""
    import keras

    return {
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "device": describe_device(),
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


# ---- the data a model saw -------------------------------------------------------------------
# Context of an MLflow dataset input, from the split in its catalog name ("train_set", ...).
_SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}


def image_set_input(name: str, image_set: dict[str, Any]) -> tuple[Any, str]:
    """A decoded image set as an MLflow dataset (name, source, digest) and its context.

    The digest is of every pixel and label (SHA-256; about half a second per 200 MB here),
    so two runs show the same digest only for the same data. The source is the folder of a
    memory-mapped split (``ImageSetDataset``), else the code that made the arrays.
    """
    images, labels = image_set["images"], np.asarray(image_set["labels"])
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(np.ascontiguousarray(array).data)  # a memory map is read, not copied
    filename = getattr(images, "filename", None)
    with warnings.catch_warnings():
        # MLflow registers two equivalent sources for local paths and warns about its choice.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = mlflow.data.from_numpy(
            images,
            targets=labels,
            name=name,
            digest=digest.hexdigest()[:16],
            source=Path(filename).parent.as_posix() if filename else None,
        )
    split = name.rsplit(".", 1)[-1].removesuffix("_set")
    return dataset, _SPLIT_CONTEXTS.get(split, split)


# How SQL stores word a unique-key clash (PostgreSQL, SQLite, MySQL).
_DUPLICATE_KEY = ("UniqueViolation", "UNIQUE constraint failed", "Duplicate entry")


def log_image_set(dataset: Any, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input``, retried when another run inserted the same dataset meanwhile.

    MLflow's SQL store looks the dataset (experiment, name, digest) up, then inserts it if it
    was missing, in one transaction but without a lock: two runs of one experiment that log
    the same data at the same moment can both miss it, and the second insert fails with a
    unique-key error (seen on a PostgreSQL server with two ``kedro run`` at once). The
    transaction is rolled back whole, so a retry finds the other run's row and links it.
    """
    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as error:
            if attempt == attempts or not any(key in str(error) for key in _DUPLICATE_KEY):
                raise
            logger.info("Dataset %s was logged by another run meanwhile; linking it.", dataset.name)
            time.sleep(0.1 * attempt)


def is_image_set(value: Any) -> bool:
    """Whether a node input is a decoded image set (``ImageSetDataset``)."""
    return isinstance(value, dict) and "images" in value and "labels" in value


# ---- datasets ------------------------------------------------------------------------------
def active_run_id(what: str) -> str | None:
    """The run a dataset's save logs to: the active one; ``None`` (and a log line) if none.

    Never opens a run: outside ``kedro run`` (a notebook's ``catalog.save``, a test running
    a pipeline directly) there is no active run and only the local file is written. A stray
    run left open here would be adopted by the next ``kedro run`` in the same process.
    For pipelines listed in ``disable_tracking.pipelines`` kedro-mlflow opens no run, so
    nothing is logged either.
    """
    run = mlflow.active_run()
    if run is None:
        logger.info("No active MLflow run: %s was saved but not logged to MLflow.", what)
        return None
    return run.info.run_id


def is_number(value: Any) -> bool:
    """A real number (not a bool): what MLflow takes as a metric value."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def metrics_from(
    data: dict[str, Any], prefix: str = "", keys: Iterable[str] | None = None
) -> list[Metric]:
    """MLflow metrics from a dict: numbers -> step 0, lists of numbers -> one step each.

    Anything else (strings, nested dicts, matrices) is not a metric and is skipped; the
    wrapped dataset still stores it. ``keys`` limits the metrics to those keys.
    """
    timestamp = int(time.time() * 1000)
    wanted = None if keys is None else set(keys)
    metrics = []
    for key, value in data.items():
        if wanted is not None and key not in wanted:
            continue
        if is_number(value):
            metrics.append(Metric(f"{prefix}{key}", float(value), timestamp, 0))
        elif isinstance(value, list | tuple) and value and all(is_number(v) for v in value):
            metrics.extend(
                Metric(f"{prefix}{key}", float(v), timestamp, step) for step, v in enumerate(value)
            )
        else:
            logger.debug("'%s' is not a number or a list of numbers; not logged as a metric.", key)
    return metrics


def log_metrics(
    run_id: str, data: dict[str, Any], prefix: str = "", keys: Iterable[str] | None = None
) -> None:
    """Log the numbers (and lists of numbers) in ``data`` to run ``run_id`` (``metrics_from``)."""
    metrics = metrics_from(data, prefix, keys)
    # MLflow accepts at most 1000 metrics per batch.
    for start in range(0, len(metrics), 1000):
        mlflow.MlflowClient().log_batch(run_id, metrics=metrics[start : start + 1000])


class MlflowJSONMetricsDataset(AtomicJSONDataset):
    """A JSON file holding a dict of numbers, whose saves are also logged as MLflow metrics.

    Takes ``json.JSONDataset``'s arguments (not ``version``), plus ``prefix`` (prepended to
    every metric name) and ``keys`` (log only these). Example::

        "{model_name}.metrics":
          type: image_classifiers.tracking.MlflowJSONMetricsDataset
          filepath: data/08_reporting/{model_name}/metrics.json

    ``{"test_accuracy": 0.9}`` logs one value (step 0); a list of numbers, a metric history
    with one step per element. Other entries are kept in the file only. Loading reads the
    file, not MLflow.
    """

    def __init__(self, *, prefix: str = "", keys: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._prefix = prefix
        self._keys = keys

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(
                f"{type(self).__name__} saves a dict of metric names to numbers or lists of "
                f"numbers, got {type(data).__name__}."
            )
        super().save(data)
        run_id = active_run_id(f"'{self._filepath}'")
        if run_id is None:
            return
        log_metrics(run_id, data, self._prefix, self._keys)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "prefix": self._prefix, "keys": self._keys}


class _ArtifactLogging:
    """Mixin for a file dataset: after the file is saved, log it as an artifact of the run.

    What kedro-mlflow's ``MlflowArtifactDataset`` does, except that it never opens a run
    (see ``active_run_id``).
    """

    def save(self, data: Any) -> None:
        super().save(data)  # type: ignore[misc]
        if self._protocol != "file":  # type: ignore[attr-defined]
            logger.info("%s is not a local file: not logged to MLflow.", self._filepath)
            return
        path = Path(self._get_save_path())  # type: ignore[attr-defined]
        run_id = active_run_id(f"'{path}'")
        if run_id is None:
            return
        client = mlflow.MlflowClient()
        if path.is_dir():  # a list or dict of figures is saved as a folder of images
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(run_id, str(path))


class MlflowFigureDataset(_ArtifactLogging, AtomicMatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` whose saved images are also logged as run artifacts."""


class MlflowCSVDataset(_ArtifactLogging, AtomicCSVDataset):
    """``pandas.CSVDataset`` whose saved file is also logged as a run artifact."""
