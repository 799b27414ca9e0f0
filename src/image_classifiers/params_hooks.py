"""Hooks on parameters: ``retrain.model`` checked against ``models`` before a run starts;
the run's ``tune.target`` handed to the tune pipeline before it is built."""

from kedro.framework.hooks import hook_impl


class ParamsCrossCheckHook:
    """``retrain.model`` must name a model of the ``models`` group (Kedro validates each group
    alone), a search's space fit its target's groups: checked before any node and before
    kedro-mlflow opens a run."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's before_pipeline_run opens the run
    def before_pipeline_run(self, pipeline, catalog) -> None:
        if {"params:retrain", "params:models"} <= pipeline.inputs():
            catalog.load("params:retrain").model_options(catalog.load("params:models"))
        if "params:tune" in pipeline.inputs():  # before the target's data processing
            from image_classifiers.pipelines.tune.nodes import check_search

            check_search(catalog.load("params:tune"), lambda name: catalog.load(f"params:{name}"))


#: ``tune.target`` of the run being set up, read by the tune pipeline; None: the default.
RUN_TARGET: dict[str, str | None] = {"target": None}


class TuneTargetHook:
    """Hands the run's ``tune.target`` to the tune pipeline, built (on the first access to
    Kedro's pipelines) after the context: its nodes are the target's data nodes."""

    @hook_impl(tryfirst=True)  # before anything reads context.params, which builds pipelines
    def after_context_created(self, context) -> None:
        RUN_TARGET["target"] = (context.config_loader["parameters"].get("tune") or {}).get("target")
