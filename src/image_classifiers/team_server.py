"""Runs started at once against a team MLflow server (scripts/mlflow_server.sh).

kedro-mlflow creates a missing experiment; two ``kedro run`` started at once on a server
that lacks it both try, and one fails with ``RESOURCE_ALREADY_EXISTS`` (MLflow's own
``set_experiment`` has the same race: mlflow/mlflow#4123, #10334). ``ServerExperimentHook``
creates it first and takes "already exists" for success. ``http(s)://`` URIs only: a SQLite
store is created under a file lock (hooks.TrackingStoreHook).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

logger = logging.getLogger(__name__)


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


class ServerExperimentHook:
    """Creates the experiment on a tracking server before kedro-mlflow looks it up."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's own setup in this hook
    def after_context_created(self, context: Any) -> None:
        try:
            config = KedroMlflowConfig.model_validate(context.config_loader["mlflow"] or {})
        except (KeyError, MissingConfigException):  # no mlflow.yml: kedro-mlflow's defaults
            config = KedroMlflowConfig()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or config.server.mlflow_tracking_uri
        if not str(uri).startswith(("http://", "https://")):
            return
        experiment = config.tracking.experiment
        try:
            ensure_experiment(uri, experiment.name, experiment.create_experiment_kwargs.tags)
        except MlflowException as exc:  # e.g. credentials kedro-mlflow sets only later
            logger.debug("Could not create the experiment ahead of kedro-mlflow: %s", exc)
