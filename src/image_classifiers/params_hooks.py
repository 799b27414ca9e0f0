"""A hook that checks ``retrain.model`` against the ``models`` group before a run starts."""

from kedro.framework.hooks import hook_impl


class ParamsCrossCheckHook:
    """``retrain.model`` must name a model of the ``models`` group (Kedro validates each group
    alone): checked before any node and before kedro-mlflow opens a run."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline, catalog) -> None:
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
