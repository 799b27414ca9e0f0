"""xception_cats, the main job: raw archive -> decoded images -> mini-Xception -> transfer
learning (the data, model_training and transfer_learning pipelines). A folder of its own so
that Kedro's selective loading (``kedro run --pipelines=xception_cats``) finds it."""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import data_processing, model_training, transfer_learning
from image_classifiers.pipelines.experiment import quietly


def create_pipeline(**kwargs) -> Pipeline:
    """Data processing, the from-scratch mini-Xception, then transfer learning.

    The transfer stage waits for the from-scratch model's metrics, so that if it fails
    (e.g. ImageNet weights unreachable) the trained model, its reports and its MLflow run
    are already saved: only ``--pipelines=transfer_learning`` is left to rerun.
    """
    scratch = model_training.create_pipeline()
    transfer = quietly(
        lambda: transfer_learning.create_pipeline(
            run_after=[f"{model_training.DEFAULT_MODEL}.metrics"]
        )
    )
    return data_processing.create_pipeline() + scratch + transfer
