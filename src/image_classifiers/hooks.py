"""Project hooks that complete kedro-mlflow's tracking.

kedro-mlflow opens one MLflow run per ``kedro run`` (named after the pipeline), logs the
parameters every node reads and saves its ``Mlflow*`` datasets into the active run. Two
things it does not do are done here:

* ``MlflowDefaultsHook`` picks the tracking store before kedro-mlflow connects to it:
  ``MLFLOW_TRACKING_URI`` wins over ``mlflow.yml``, which wins over the embedded default
  ``sqlite:///<project>/mlflow.db``; a SQLite store keeps its artifacts in ``mlartifacts/``
  beside the database file.
* ``ModelRunsHook`` gives every model its own MLflow run, nested in the pipeline's run: all
  nodes of a top-level namespace (``mini_xception.train_model``, ...) run with that model's
  child run active, so their parameters, metrics, artifacts and logged model land there. It
  also tags each run (architecture, Keras backend, device, git commit, dataset checksum,
  Kedro pipeline) and attaches the data-quality report.

Both rely on hook order: ``tryfirst`` implementations run before kedro-mlflow's.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from mlflow.entities import RunStatus

from image_classifiers.tracking import (
    DEFAULT_ARTIFACTS_DIR,
    environment_tags,
    flatten_params,
    git_commit,
    resolve_tracking_uri,
    sqlite_file,
)

logger = logging.getLogger(__name__)

# The same patterns kedro-mlflow registers for its config, so both read the same files.
_MLFLOW_CONFIG_PATTERNS = ["mlflow*", "mlflow*/**", "**/mlflow*"]


class MlflowDefaultsHook:
    """Resolves the tracking URI and defaults in ``mlflow.yml`` before kedro-mlflow reads it."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Patch the merged ``mlflow`` config that kedro-mlflow is about to read.

        Args:
            context: The Kedro context; its config loader serves the patched config.
        """
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", _MLFLOW_CONFIG_PATTERNS)
        try:
            conf = copy.deepcopy(loader["mlflow"]) or {}
        except MissingConfigException:
            conf = {}
        server = conf["server"] = conf.get("server") or {}
        tracking = conf["tracking"] = conf.get("tracking") or {}

        uri, source = resolve_tracking_uri(server.get("mlflow_tracking_uri"), context.project_path)
        server["mlflow_tracking_uri"] = uri
        database = sqlite_file(uri)
        if database is not None:
            # A SQLite store keeps its artifacts beside it (mlartifacts/), whatever the
            # working directory; MLflow would use ./mlruns of the current one. A tracking
            # server decides its own artifact location.
            experiment = tracking["experiment"] = tracking.get("experiment") or {}
            kwargs = experiment["create_experiment_kwargs"] = (
                experiment.get("create_experiment_kwargs") or {}
            )
            if not kwargs.get("artifact_location"):
                kwargs["artifact_location"] = (database.parent / DEFAULT_ARTIFACTS_DIR).as_posix()

        run = tracking["run"] = tracking.get("run") or {}
        if run.get("nested", True):
            # With nested=True kedro-mlflow re-enters the pipeline's run on top of the model
            # run before every node, so the node's outputs would be logged to the wrong run.
            logger.info("Setting mlflow.yml tracking.run.nested=false (needed for model runs).")
            run["nested"] = False

        loader["mlflow"] = conf
        logger.info("MLflow tracking URI (from %s): %s", source, uri)


class ModelRunsHook:
    """Opens one nested MLflow run per model namespace inside kedro-mlflow's pipeline run.

    Nodes outside any namespace (data processing, the architecture comparison) log to the
    pipeline's run. Needs the default sequential, synchronous runner: saves happen right
    after a node runs and before the next node's ``before_node_run``, which is when the model
    run is switched. With ``ParallelRunner``, ``ThreadRunner`` or ``--async`` everything is
    logged to the pipeline's run instead.
    """

    def __init__(self, excluded_namespaces: Iterable[str] = ()):
        """Create the hook.

        Args:
            excluded_namespaces: Top-level namespaces that are not models and whose nodes
                should log to the pipeline's run.
        """
        self._excluded = set(excluded_namespaces)
        self._project_path = None
        self._reset()

    def _reset(self) -> None:
        self._parent_id: str | None = None
        self._pipeline_name = "__default__"
        self._tags: dict[str, str] = {}
        self._children: dict[str, str] = {}
        self._pending: Counter[str] = Counter()
        self._active: str | None = None

    def model_namespace(self, node: Node) -> str | None:
        """The model a node belongs to: its top-level namespace, unless excluded."""
        if not node.namespace:
            return None
        top = node.namespace.split(".", 1)[0]
        return None if top in self._excluded else top

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = context.project_path

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the pipeline's run
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        self._reset()
        run = mlflow.active_run()
        if run is None:  # tracking is disabled for this pipeline in mlflow.yml
            return
        runner = str(run_params.get("runner") or "")
        if "ParallelRunner" in runner or "ThreadRunner" in runner:
            logger.warning(
                "Model runs need the sequential runner; with %s every model logs to the "
                "pipeline's MLflow run.",
                runner,
            )
            return
        self._parent_id = run.info.run_id
        self._pipeline_name = "+".join(run_params.get("pipeline_names") or ["__default__"])
        self._pending = Counter(
            namespace for node in pipeline.nodes if (namespace := self.model_namespace(node))
        )
        self._tags = {
            **environment_tags(),
            **(git_commit(self._project_path) if self._project_path else {}),
            "kedro_pipeline": self._pipeline_name,
        }
        mlflow.set_tags(self._tags)

    @hook_impl(tryfirst=True)  # before kedro-mlflow logs the node's parameters to the active run
    def before_node_run(
        self, node: Node, catalog: Any, inputs: dict[str, Any], is_async: bool
    ) -> None:
        if self._parent_id is None:
            return
        if is_async:
            logger.warning(
                "Model runs need synchronous saves (no --async); every model logs to the "
                "pipeline's MLflow run."
            )
            self._switch_to(None, catalog)
            self._parent_id = None
            return
        namespace = self.model_namespace(node)
        self._switch_to(namespace, catalog)
        if namespace is not None:
            self._log_model_config(namespace, inputs)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        if self._parent_id is not None and (namespace := self.model_namespace(node)):
            self._pending[namespace] -= 1

    @hook_impl(tryfirst=True)  # close model runs before kedro-mlflow closes the pipeline's run
    def after_pipeline_run(self) -> None:
        if self._parent_id is not None:
            self._switch_to(None, None)
        self._reset()

    @hook_impl(tryfirst=True)  # kedro-mlflow then marks the pipeline's run FAILED
    def on_pipeline_error(self) -> None:
        """Mark the failing model's run, and every model run left incomplete, FAILED."""
        if self._parent_id is None:
            return
        failed = RunStatus.to_string(RunStatus.FAILED)
        if self._active is not None:
            mlflow.end_run(failed)
            self._active = None
        client = mlflow.MlflowClient()
        for namespace, run_id in self._children.items():
            if self._pending[namespace] > 0:
                client.set_terminated(run_id, failed)
        self._reset()

    # ---- helpers -------------------------------------------------------------------------
    def _switch_to(self, namespace: str | None, catalog: Any) -> None:
        """Make ``namespace``'s run the active one (``None``: the pipeline's run)."""
        if namespace == self._active:
            return
        if self._active is not None:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self._children[self._active]:
                # Ends it FINISHED; it is re-opened if another node of this model follows.
                mlflow.end_run()
            else:
                logger.warning("The MLflow run of '%s' was closed by someone else.", self._active)
            self._active = None
        if namespace is None:
            return
        if namespace in self._children:
            mlflow.start_run(run_id=self._children[namespace], nested=True)
        else:
            run = mlflow.start_run(
                run_name=f"{self._pipeline_name}.{namespace}",
                nested=True,
                tags={**self._tags, **_dataset_tags(catalog), "model": namespace},
            )
            self._children[namespace] = run.info.run_id
            _log_data_quality_report(catalog)
        self._active = namespace

    @staticmethod
    def _log_model_config(namespace: str, inputs: dict[str, Any]) -> None:
        """Log the model's own options as ``model.*`` (the same keys in every model run)."""
        for name, value in inputs.items():
            is_model_config = name.startswith("params:") and name.rsplit(".", 1)[-1] == namespace
            if is_model_config and isinstance(value, dict):
                mlflow.log_params(flatten_params(value, prefix="model"))
                # From-scratch models name an architecture, transfer learning a base network.
                architecture = value.get("architecture") or value.get("base")
                if architecture:
                    mlflow.set_tag("architecture", str(architecture))


def _load_if_exists(catalog: Any, name: str) -> Any:
    """Load ``name`` from the catalog, or ``None`` if it is not declared or not written yet."""
    try:
        return catalog.load(name) if catalog.exists(name) else None
    except Exception as exc:  # tracking extras must never fail a training run
        logger.debug("Could not load '%s' for tracking: %s", name, exc)
        return None


def _dataset_tags(catalog: Any) -> dict[str, str]:
    """The checksum of the raw archive the model was trained from, when it is known."""
    archive = _load_if_exists(catalog, "raw_archive")
    checksum = archive.get("sha256") if isinstance(archive, dict) else None
    return {"dataset_sha256": str(checksum)} if checksum else {}


def _log_data_quality_report(catalog: Any) -> None:
    """Attach the data pipeline's report (skipped/unreadable images) to the model's run."""
    report = _load_if_exists(catalog, "data_quality_report")
    if report is not None:
        mlflow.log_dict(report, "data_quality.json")
