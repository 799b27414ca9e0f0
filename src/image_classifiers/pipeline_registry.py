"""Project pipelines."""

import warnings

from kedro.framework.project import find_pipelines
from kedro.framework.project import pipelines as project_pipelines
from kedro.pipeline import Pipeline

from image_classifiers.pipelines import image_folders, model_training, transfer_learning


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    # Kedro 1.7 imports only the pipeline folders named by `kedro run --pipeline=...`, but
    # xception_cats is no folder: it is assembled below from others, so find them all.
    project_pipelines.set_requested(None)
    pipelines = find_pipelines(raise_errors=True)
    # The main job: raw archive -> decoded images -> trained, evaluated mini-Xception ->
    # transfer learning. The transfer stage waits for the from-scratch model's metrics, so
    # that if it fails (e.g. ImageNet weights unreachable) the trained model, its reports
    # and its MLflow run are already saved: only `--pipeline=transfer_learning` is left to
    # rerun.
    xception_cats = pipelines["data_processing"] + pipelines["model_training"]
    with warnings.catch_warnings():
        # Kedro warns about dotted dataset names used outside their namespace, meant for
        # hand-written names; this one is the mini_xception namespace's own output.
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        xception_cats += transfer_learning.create_pipeline(
            run_after=[f"{model_training.DEFAULT_MODEL}.metrics"]
        )
    pipelines["xception_cats"] = xception_cats
    # image_folders with an ImageNet base instead of a from-scratch model.
    pipelines["image_folders_transfer"] = image_folders.pipeline.create_transfer_pipeline()
    pipelines["__default__"] = xception_cats
    return pipelines
