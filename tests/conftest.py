"""Shared test fixtures: small generated archives with the real archive's nesting."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fixture_archives import write_archive
from omegaconf import OmegaConf

from image_classifiers.params_hooks import model_options

# Tests run on the default backend unless the caller chose one; keep TF quiet on CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests copy the project into tmp folders that lack its .telemetry file: never prompt or send.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# conf/base needs the project's resolvers (settings.CONFIG_LOADER_ARGS); the tests' own
# OmegaConfigLoaders get this one from OmegaConf's global registry.
if not OmegaConf.has_resolver("model_options"):
    with warnings.catch_warnings():  # deprecated in OmegaConf 2.4, as Kedro 1.7 calls it
        warnings.simplefilter("ignore", UserWarning)
        OmegaConf.register_new_resolver("model_options", model_options)


@pytest.fixture
def make_archive(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_archive(indices=range(16), ...)`` -> path of a nested fixture archive."""

    def _make(name: str = "dogs-vs-cats.zip", **kwargs) -> Path:
        return write_archive(tmp_path / "archives" / name, **kwargs)

    return _make


_MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",  # set_experiment exports it too
    "MLFLOW_RUN_ID",
)


@contextmanager
def restored_mlflow_state() -> Iterator[None]:
    """Undo what the code inside (or kedro-mlflow inside it) left in MLflow's process-wide state
    and the working directory.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` also export environment variables, and
    ``conf/base/mlflow.yml`` reads ``MLFLOW_TRACKING_URI``: a store chosen by one test would
    otherwise become every later test's store in the same worker process.
    """
    env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    cwd = os.getcwd()
    try:
        yield
    finally:
        if "mlflow" in sys.modules:
            import mlflow
            from mlflow.tracking import fluent
            from mlflow.tracking._model_registry import utils as registry_utils
            from mlflow.tracking._tracking_service import utils as tracking_utils

            while mlflow.active_run() is not None:
                mlflow.end_run()
            tracking_utils._tracking_uri = None
            registry_utils._registry_uri = None
            fluent._active_experiment_id = None  # set_experiment's choice, an id of that store
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.chdir(cwd)


@pytest.fixture(autouse=True)
def _isolated_mlflow_state() -> Iterator[None]:
    with restored_mlflow_state():
        yield


# Autouse fixtures set up before the other fixtures of their scope: this one also undoes what
# a module-scoped fixture (a pipeline run shared by a module's tests) left behind.
@pytest.fixture(autouse=True, scope="module")
def _isolated_module_mlflow_state() -> Iterator[None]:
    with restored_mlflow_state():
        yield


@pytest.fixture
def sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite tracking store and registry in ``tmp_path`` (the working directory, where
    it puts its artifacts), as the active store with an experiment of its own; its URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    # Earlier tests in this process may have chosen an experiment of another store.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("tests")
    yield uri
