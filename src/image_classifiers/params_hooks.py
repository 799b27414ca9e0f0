"""A hook that checks ``retrain.model`` against the ``models`` group before a run starts."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline


class ParamsCrossCheckHook:
    """Checks what Kedro's typed parameters cannot: a group naming an entry of another.

    Kedro validates each parameter group on its own; ``retrain.model`` must also name a
    model of the ``models`` group (whose options are then validated). Checked before any
    node runs and before kedro-mlflow opens a run, so a typo costs neither.
    """

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        """Check the model named by ``params:retrain``.

        Raises:
            ValueError: Naming the key and the models to choose from.
        """
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
