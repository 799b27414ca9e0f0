"""Checks before a run starts: ``retrain.model`` against the ``models`` group, that the
folders the run writes to are writable (not after hours of training), and the resolver that
checks ``image_folders.model`` while the configuration loads; the run's ``tune.target``
handed to the tune pipeline before it is built."""

import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from omegaconf.errors import InterpolationKeyError


def model_options(models: Any, name: str) -> Any:
    """``${model_options:${models},<name>}``: ``models[name]``, or an error that lists the
    models (OmegaConf's own says only "Interpolation key 'models.nope' not found")."""
    if name not in models:
        # An InterpolationKeyError passes OmegaConf unwrapped and is a user error (no traceback).
        raise InterpolationKeyError(
            f"The model '{name}' is not a key of models; choose one of {sorted(models)} "
            "(parameters_model_training.yml), or add it there."
        )
    return models[name]


class ReadOnlyOutputsError(PermissionError):
    """A folder the run writes to is read-only."""


class ParamsCrossCheckHook:
    """``retrain.model`` must name a model of the ``models`` group (Kedro validates each group
    alone), every output's folder must be writable and a search's space fit its target's
    groups: checked before any node and before
    kedro-mlflow opens a run."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline, catalog) -> None:
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
        if read_only := read_only_folders(pipeline, catalog):
            raise ReadOnlyOutputsError(
                f"Cannot write to {', '.join(read_only)}, where this run saves its outputs: "
                "make them writable (chmod u+w) or free them, then run again."
            )
        if "params:tune" in pipeline.inputs():  # before the target's data processing
            from image_classifiers.pipelines.tune.nodes import check_search

            check_search(catalog.load("params:tune"), lambda name: catalog.load(f"params:{name}"))


def read_only_folders(pipeline, catalog) -> list[str]:
    """The nearest existing folders of the outputs' local files this process cannot write."""
    folders = set()
    for name in pipeline.all_outputs():
        config = catalog.config_resolver.resolve_pattern(name)
        inner = config.get("dataset")  # an MlflowArtifactDataset's file dataset
        path = config.get("filepath") or (inner.get("filepath") if isinstance(inner, dict) else "")
        if path and "://" not in path:
            folder = Path(path).absolute().parent
            while not folder.exists():
                folder = folder.parent
            if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
                folders.add(str(folder))
    return sorted(folders)


#: ``tune.target`` of the run being set up, read by the tune pipeline; None: the default.
RUN_TARGET: dict[str, str | None] = {"target": None}


class TuneTargetHook:
    """Hands the run's ``tune.target`` to the tune pipeline, built (on the first access to
    Kedro's pipelines) after the context: its nodes are the target's data nodes."""

    @hook_impl(tryfirst=True)  # before anything reads context.params, which builds pipelines
    def after_context_created(self, context) -> None:
        RUN_TARGET["target"] = (context.config_loader["parameters"].get("tune") or {}).get("target")
