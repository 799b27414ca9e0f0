"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines: one per folder of ``image_classifiers.pipelines``.

    Kedro 1.7 imports only the folders that ``kedro run --pipelines=...`` names; every
    pipeline, the assembled ones too (``xception_cats``, ``image_folders_transfer``), has
    a folder of its own for that.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects; ``__default__`` is
        ``xception_cats`` when all are loaded.
    """
    pipelines = find_pipelines(raise_errors=True)
    if "xception_cats" in pipelines:
        pipelines["__default__"] = pipelines["xception_cats"]
    return pipelines
