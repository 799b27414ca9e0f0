"""Project pipelines: one per folder of ``image_classifiers.pipelines``."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline folder (Kedro 1.7 imports only those ``--pipelines`` names, so the
    assembled ones have folders too); ``__default__`` is ``xception_cats``."""
    pipelines = find_pipelines(raise_errors=True)
    if "xception_cats" in pipelines:
        pipelines["__default__"] = pipelines["xception_cats"]
    return pipelines
