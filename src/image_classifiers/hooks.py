"""Project hooks that complete kedro-mlflow's tracking, on its and MLflow's public APIs.

kedro-mlflow opens one MLflow run per ``kedro run`` (named after the pipeline), logs the
parameters every node reads and saves its ``Mlflow*`` datasets into the active run. It
does not create a SQLite store safely when two runs start at once, nor give each model a
run of its own; these hooks do (``tests/test_tracking.py`` checks the kedro-mlflow
behaviour they build on).

``TypedParamsHook`` logs typed parameter groups (``image_classifiers.params``) field by field
to the pipeline's run: kedro-mlflow flattens only plain dicts, so a pydantic model would be
one string param there instead of ``training.epochs``, ``training.optimizer``, ...
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from mlflow.entities import RunStatus
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from pydantic import BaseModel

from image_classifiers.tracking import (
    create_store,
    environment_tags,
    flatten_params,
    git_commit,
    image_set_input,
    is_image_set,
    log_image_set,
)

logger = logging.getLogger(__name__)


class TrackingStoreHook:
    """Creates the SQLite tracking store under a file lock before kedro-mlflow opens it."""

    @hook_impl(tryfirst=True)  # kedro-mlflow connects to the store in its own implementation
    def after_context_created(self, context: Any) -> None:
        create_store(context.config_loader["mlflow"], context)


class ModelRunsHook:
    """Opens one nested MLflow run per model namespace inside kedro-mlflow's pipeline run.

    While a node of a top-level namespace (``mini_xception.train_model``, ...) runs and its
    outputs are saved, that model's run is the active one: the node's parameters (also as
    ``model.*``), the image sets it reads (as MLflow datasets), its live epoch metrics, its
    metrics, artifacts and logged model land there. Before the next node, the model's run
    is left again so that kedro-mlflow's own ``before_node_run`` finds its pipeline run
    active, as in any kedro-mlflow project. Nodes outside a namespace log to the pipeline's
    run. Each model run also records system metrics (CPU, memory, GPU with ``nvidia-ml-py``;
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` turns them off).

    A node that trains several models itself (``compare_architectures``) opens each one's
    run with :func:`model_run`, which this hook serves while a tracked pipeline runs.

    Needs the default sequential, synchronous runner (saves happen after ``after_node_run``
    and before the next ``before_node_run``); otherwise everything logs to the pipeline's run.
    """

    def __init__(self, excluded_namespaces: Iterable[str] = ()):
        """Create the hook.

        Args:
            excluded_namespaces: Top-level namespaces that are not models and whose nodes
                should log to the pipeline's run.
        """
        self._excluded = set(excluded_namespaces)
        self._reset()

    def _reset(self) -> None:
        self._parent_id: str | None = None
        self._pipeline_name = "__default__"
        self._tags: dict[str, str] = {}
        self._children: dict[str, str] = {}
        self._pending: Counter[str] = Counter()
        self._inputs: dict[str, set[str]] = {}
        self._image_sets: dict[str, tuple[Any, str]] = {}
        self._catalog: Any = None

    def model_namespace(self, node: Node) -> str | None:
        """The model a node belongs to: its top-level namespace, unless excluded."""
        if not node.namespace:
            return None
        top = node.namespace.split(".", 1)[0]
        return None if top in self._excluded else top

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the pipeline's run
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        self._reset()
        _serving.set(None)
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
        self._catalog = catalog
        _serving.set(self)
        # `kedro run` gives pipeline_names; kedro-dagster's ops give pipeline_name.
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name")]
        self._pipeline_name = "+".join(name for name in names if name) or "__default__"
        self._pending = Counter(
            namespace for node in pipeline.nodes if (namespace := self.model_namespace(node))
        )
        self._tags = {
            **environment_tags(),
            **git_commit(run_params.get("project_path") or "."),
            "kedro_pipeline": self._pipeline_name,
        }
        mlflow.set_tags(self._tags)

    @hook_impl(specname="before_node_run", tryfirst=True)  # before kedro-mlflow's
    def leave_model_run(self) -> None:
        """End the previous node's model run (saved now), so the pipeline's run is active."""
        self._end_model_run(RunStatus.FINISHED)

    @hook_impl(trylast=True)  # after kedro-mlflow has logged the node's parameters
    def before_node_run(
        self, node: Node, catalog: Any, inputs: dict[str, Any], is_async: bool
    ) -> None:
        namespace = self.model_namespace(node)
        if self._parent_id is None or namespace is None:
            return
        if is_async:
            logger.warning(
                "Model runs need synchronous saves (no --async); every model logs to the "
                "pipeline's MLflow run."
            )
            self._parent_id = None
            return
        self._enter(namespace, catalog, inputs)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        if self._parent_id is not None and (namespace := self.model_namespace(node)):
            self._pending[namespace] -= 1

    @hook_impl(tryfirst=True)  # close the model run before kedro-mlflow closes the pipeline's
    def after_pipeline_run(self) -> None:
        self._end_model_run(RunStatus.FINISHED)
        self._reset()
        _serving.set(None)

    @hook_impl(tryfirst=True)  # kedro-mlflow then marks the pipeline's run FAILED
    def on_pipeline_error(self) -> None:
        """Mark the failing model's run, and every model run left incomplete, FAILED."""
        self._end_model_run(RunStatus.FAILED)
        client = mlflow.MlflowClient()
        for namespace, run_id in self._children.items():
            if self._pending[namespace] > 0:
                client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        self._reset()
        _serving.set(None)

    # ---- helpers -------------------------------------------------------------------------
    def _enter(self, namespace: str, catalog: Any, inputs: Mapping[str, Any]) -> str:
        """Start (or resume) ``namespace``'s run and log ``inputs`` to it; its run id."""
        # MLflow samples system metrics while the run is active, resuming on re-entry.
        system_metrics = _system_metrics_enabled()
        if namespace in self._children:
            mlflow.start_run(
                run_id=self._children[namespace], nested=True, log_system_metrics=system_metrics
            )
        else:
            run = mlflow.start_run(
                run_name=f"{self._pipeline_name}.{namespace}",
                nested=True,
                tags={**self._tags, **_dataset_tags(catalog), "model": namespace},
                log_system_metrics=system_metrics,
            )
            self._children[namespace] = run.info.run_id
            self._inputs[namespace] = set()
            _log_data_quality_report(catalog)
        self._log_node_inputs(namespace, inputs)
        return self._children[namespace]

    def _end_model_run(self, status: int) -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id in self._children.values():
            mlflow.end_run(RunStatus.to_string(status))

    def _log_node_inputs(self, namespace: str, inputs: Mapping[str, Any]) -> None:
        """Log what kedro-mlflow logged to the pipeline's run (the node's parameters, flat)
        to the model's run too, the model's own options again as ``model.*``, and the
        image sets the node reads as MLflow datasets."""
        logged = self._inputs[namespace]
        for name, value in inputs.items():
            if name in logged:
                continue
            logged.add(name)
            if name.startswith("params:"):
                key = name.removeprefix("params:")
                # A typed group (image_classifiers.params) logs as the dict it was given as.
                if isinstance(value, BaseModel):
                    value = value.model_dump(mode="json")  # noqa: PLW2901
                mlflow.log_params(flatten_params({key: value}))
                if key.rsplit(".", 1)[-1] == namespace and isinstance(value, dict):
                    mlflow.log_params(flatten_params(value, prefix="model"))
                    # From-scratch models name an architecture, transfer learning a base.
                    if architecture := value.get("architecture") or value.get("base"):
                        mlflow.set_tag("architecture", str(architecture))
            elif is_image_set(value):
                if name not in self._image_sets:  # the digest reads every pixel: once a run
                    self._image_sets[name] = image_set_input(name, value)
                dataset, context = self._image_sets[name]
                log_image_set(dataset, context)


#: The ModelRunsHook of the tracked ``kedro run`` in progress, for ``model_run``.
_serving: ContextVar[ModelRunsHook | None] = ContextVar("model_runs", default=None)


@contextmanager
def model_run(model: str, inputs: Mapping[str, Any]) -> Iterator[str | None]:
    """Run the body in model ``model``'s own MLflow run, nested in the pipeline's run.

    For a node that trains several models one after the other: each gets the run a
    model namespace gets from ``ModelRunsHook`` (name ``<pipeline>.<model>``, tags, system
    metrics, the data quality report), with ``inputs`` logged as that hook logs a node's
    inputs (``params:*`` flat, the model's own options also as ``model.*``; image sets as
    MLflow datasets). Live epoch metrics and whatever the body logs land in it. The run
    ends FINISHED, or FAILED when the body raises.

    Args:
        model: The model's name (a key of the ``models`` parameters).
        inputs: What the model is built and trained from, named as node inputs
            (``params:models.<model>``, ``params:training``, ``train_set``, ...).

    Yields:
        The run's id; ``None`` when no tracked ``kedro run`` is in progress (the node called
        directly, tracking disabled, a parallel runner): nothing is logged then.
    """
    hook = _serving.get()
    if hook is None or hook._parent_id is None:
        yield None
        return
    run_id = hook._enter(model, hook._catalog, inputs)
    try:
        yield run_id
    except BaseException:
        hook._end_model_run(RunStatus.FAILED)
        raise
    hook._end_model_run(RunStatus.FINISHED)


def _system_metrics_enabled() -> bool:
    """On unless MLflow's own switch, ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``, says off."""
    variable = MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    return variable.get() if variable.defined else True


class TypedParamsHook:
    """Logs each field of a node's typed parameters, as kedro-mlflow logs a dict's keys."""

    @hook_impl
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        """Log ``<group>.<field>`` for every pydantic-model input to the active run.

        Args:
            inputs: The node's inputs; ``params:<group>`` ones may be typed models.
        """
        if mlflow.active_run() is None:
            return
        params: dict[str, Any] = {}
        for name, value in inputs.items():
            if name.startswith("params:") and isinstance(value, BaseModel):
                params.update(flatten_params(value.model_dump(mode="json"), prefix=name[7:]))
        if params:
            mlflow.log_params(params)


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
