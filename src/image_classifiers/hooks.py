"""Hooks for what kedro-mlflow cannot do: create the store and experiment safely when two
runs start at once (``TrackingStoreHook``), give each model its own run, flatten typed
parameter groups and mark KILLED the runs of killed processes (``ModelRunsHook``).
``tests/test_tracking.py`` guards what they build on."""

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node
from mlflow.entities import RunStatus
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from pydantic import BaseModel

from image_classifiers.model_logging import keras_signature
from image_classifiers.tracking import (
    close_killed_runs,
    environment_tags,
    flatten_params,
    git_commit,
    image_set_input,
    is_image_set,
    log_image_set,
    prepare_store,
    process_tags,
)

logger = logging.getLogger(__name__)


class TrackingStoreHook:
    """Creates the store and experiment first: kedro-mlflow's setup races when two runs
    start at once on a new SQLite store or on a server without the experiment."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's own setup in this hook
    def after_context_created(self, context: Any) -> None:
        prepare_store(context.config_loader["mlflow"], context)


class ModelRunsHook:
    """One MLflow run per model namespace, nested in kedro-mlflow's pipeline run: while a node
    of ``mini_xception`` runs and saves, run ``<pipeline>.mini_xception`` is the active one, so
    the catalog's datasets and live metrics log there. It is left before kedro-mlflow logs the
    node's parameters and entered after, so both runs get them. Sequential runner only."""

    def __init__(self, excluded_namespaces: Iterable[str] = ()):
        """Create the hook; nodes of ``excluded_namespaces`` log to the pipeline's run."""
        self._excluded = set(excluded_namespaces)
        self._reset()

    def _reset(self, tags: dict[str, str] | None = None, catalog: Any = None) -> None:
        self._tags = tags  # None: no tracked run in progress
        self._catalog = catalog
        self._runs: dict[str, str] = {}  # model -> run id
        self._pending: Counter[str] = Counter()  # model -> its nodes not run yet
        self._logged: set[tuple[str, str]] = set()  # (model, input) already logged
        self._image_sets: dict[str, tuple[Any, str]] = {}  # the digest reads every pixel

    def model_namespace(self, node: Node) -> str | None:
        """The model a node belongs to: its top-level namespace, unless excluded."""
        top = node.namespace.split(".", 1)[0] if node.namespace else None
        return None if top in self._excluded else top

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the pipeline's run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        runner = str(run_params.get("runner") or "")
        if (active := mlflow.active_run()) is None:  # tracking disabled in mlflow.yml
            self._reset()
            return
        mlflow.set_tags(process_tags())
        close_killed_runs(active.info.experiment_id)
        if "Parallel" in runner or "Thread" in runner:  # they leave the model run behind
            self._reset()
            return
        tags = {
            **process_tags(),
            **environment_tags(),
            **git_commit(run_params.get("project_path") or "."),
            "kedro_pipeline": "+".join(run_params.get("pipeline_names") or ["__default__"]),
        }
        self._reset(tags, catalog)
        self._pending.update(filter(None, map(self.model_namespace, pipeline.nodes)))
        mlflow.set_tags(tags)

    @hook_impl(specname="before_node_run", tryfirst=True)  # before kedro-mlflow's
    def leave_model_run(self) -> None:
        """End the previous node's model run (its outputs are saved now)."""
        self._end_model_run(RunStatus.FINISHED)

    @hook_impl(trylast=True)  # after kedro-mlflow has logged the node's parameters
    def before_node_run(self, node: Node, inputs: dict[str, Any], is_async: bool) -> None:
        if self._tags is None:
            return
        # kedro-mlflow flattens dicts only; a typed group (params.py) would be one string.
        typed = {
            name.removeprefix("params:"): value.model_dump(mode="json")
            for name, value in inputs.items()
            if name.startswith("params:") and isinstance(value, BaseModel)
        }
        if typed:
            mlflow.log_params(flatten_params(typed))
        if (model := self.model_namespace(node)) is not None and not is_async:
            self._enter(model, inputs)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        if model := self.model_namespace(node):
            self._pending[model] -= 1

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Sign the model ``*.mlflow_model`` logged (kedro-mlflow's ``save_args`` cannot); make
        a ``*.model_card`` the description of the version the model's run registered."""
        if dataset_name.endswith("mlflow_model") and (logged := mlflow.last_logged_model()):
            mlflow.models.set_signature(logged.model_uri, keras_signature(data))
        # The card is an artifact of the run (its catalog entry); a registered version's
        # description has no catalog dataset, and the version that *.mlflow_model registered
        # is only known here, from the run (the card's node runs after log_to_mlflow).
        if dataset_name.endswith(".model_card") and (run := mlflow.active_run()):
            client = mlflow.MlflowClient()
            for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
                client.update_model_version(version.name, version.version, description=data)

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the pipeline's run
    def after_pipeline_run(self) -> None:
        self._end_model_run(RunStatus.FINISHED)
        self._reset()

    @hook_impl(tryfirst=True)  # kedro-mlflow then marks the pipeline's run FAILED
    def on_pipeline_error(self) -> None:
        """Mark the failing model's run, and every model run left incomplete, FAILED."""
        self._end_model_run(RunStatus.FAILED)
        for model, run_id in self._runs.items():
            if self._pending[model] > 0:
                mlflow.MlflowClient().set_terminated(run_id, "FAILED")
        self._reset()

    def _enter(self, model: str, inputs: Mapping[str, Any]) -> None:
        """Start (or resume) ``model``'s run and log ``inputs`` to it."""
        variable = MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING  # MLflow's own switch, on by default
        system_metrics = variable.get() if variable.defined else True
        if model in self._runs:
            mlflow.start_run(self._runs[model], nested=True, log_system_metrics=system_metrics)
        else:
            archive = _load_if_written(self._catalog, "raw_archive")
            sha256 = archive.get("sha256") if isinstance(archive, dict) else None
            checksum = {"dataset_sha256": sha256} if sha256 else {}
            run = mlflow.start_run(
                run_name=f"{self._tags['kedro_pipeline']}.{model}",
                nested=True,
                tags={**self._tags, **checksum, "model": model},
                log_system_metrics=system_metrics,
            )
            self._runs[model] = run.info.run_id
            if (report := _load_if_written(self._catalog, "data_quality_report")) is not None:
                mlflow.log_dict(report, "data_quality.json")
        for name, value in inputs.items():
            if (model, name) not in self._logged:
                self._logged.add((model, name))
                self._log_input(model, name, value)

    def _end_model_run(self, status: int) -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id in self._runs.values():
            mlflow.end_run(RunStatus.to_string(status))

    def _log_input(self, model: str, name: str, value: Any) -> None:
        """Parameters flat (the model's own also as ``model.*``), an image set as a dataset."""
        if name.startswith("params:"):
            key = name.removeprefix("params:")
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            mlflow.log_params(flatten_params({key: value}))
            if key.rsplit(".", 1)[-1] == model and isinstance(value, dict):
                mlflow.log_params(flatten_params(value, prefix="model"))
                if architecture := value.get("architecture") or value.get("base"):
                    mlflow.set_tag("architecture", str(architecture))
        elif is_image_set(value):
            if name not in self._image_sets:
                self._image_sets[name] = image_set_input(name, value)
            log_image_set(*self._image_sets[name])


def _load_if_written(catalog: Any, name: str) -> Any:
    """``name`` from the catalog, or ``None`` if it is not declared or not written yet."""
    try:
        return catalog.load(name) if catalog.exists(name) else None
    except Exception as exc:  # tracking extras must never fail a training run
        logger.debug("Could not load '%s' for tracking: %s", name, exc)
        return None
