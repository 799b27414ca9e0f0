"""A hook that checks ``retrain.model`` against the ``models`` group before a run starts."""

from kedro.framework.hooks import hook_impl


class ParamsCrossCheckHook:
    """Kedro validates each parameter group alone; ``retrain.model`` must also name a model
    of the ``models`` group (whose options are then validated). Checked before any node and
    before kedro-mlflow opens a run, so a typo costs neither."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline, catalog) -> None:
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
