"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.framework.project import pipelines as project_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    # Kedro 1.7 imports only the pipeline folders named by `kedro run --pipeline=...`, but
    # xception_cats is no folder: it is assembled below from others, so find them all.
    project_pipelines.set_requested(None)
    pipelines = find_pipelines(raise_errors=True)
    # The main job: raw archive -> decoded images -> trained, evaluated model(s).
    xception_cats = Pipeline([])
    for name in ("data_processing", "model_training", "transfer_learning"):
        xception_cats += pipelines.get(name, Pipeline([]))
    pipelines["xception_cats"] = xception_cats
    pipelines["__default__"] = xception_cats
    return pipelines
