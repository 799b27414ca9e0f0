"""A hook that checks ``retrain.model`` against the ``models`` group before a run starts, and
the resolver that does it for ``image_folders.model`` while the configuration loads."""

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


class ParamsCrossCheckHook:
    """``retrain.model`` must name a model of the ``models`` group (Kedro validates each group
    alone): checked before any node and before kedro-mlflow opens a run."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline, catalog) -> None:
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
