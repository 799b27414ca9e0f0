"""A hook that checks one parameter group against another before a run starts.

Kedro validates each typed group (``image_classifiers.params``) on its own; a group that
names entries of another group needs this. Parameter checks, not tracking: it lives apart
from the MLflow hooks of ``hooks.py``.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from image_classifiers.params import CompareArchitecturesParams, RetrainParams


class ParamsCrossCheckHook:
    """Checks what Kedro's typed parameters cannot: a group naming entries of another group.

    Kedro validates each parameter group against its own model. ``compare_architectures.
    models`` and ``retrain.model`` must also name models of the ``models`` group (whose
    options are then validated): checked here, before any node runs and before
    kedro-mlflow opens a run, so a typo costs neither training nor a run.
    """

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        """Check the models named by ``params:compare_architectures`` or ``params:retrain``.

        Raises:
            ValueError: Naming the key and the models to choose from.
        """
        inputs = pipeline.inputs()
        if "params:compare_architectures" in inputs:
            compare = CompareArchitecturesParams.coerce(
                catalog.load("params:compare_architectures")
            )
            compare.listed_options(catalog.load("params:models"))
        if "params:retrain" in inputs and "params:models" in inputs:
            retrain = RetrainParams.coerce(catalog.load("params:retrain"))
            retrain.model_options(catalog.load("params:models"))
