"""xception_cats, assembled from the data, model_training and transfer_learning pipelines.

A pipeline folder of its own so that Kedro's selective loading (``kedro run --pipelines=
xception_cats`` imports only the folders it names) finds it.
"""

from __future__ import annotations

import warnings

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import data_processing, model_training, transfer_learning


def create_pipeline(**kwargs) -> Pipeline:
    """Data processing, the from-scratch mini-Xception, then transfer learning.

    The transfer stage waits for the from-scratch model's metrics, so that if it fails
    (e.g. ImageNet weights unreachable) the trained model, its reports and its MLflow run
    are already saved: only ``--pipelines=transfer_learning`` is left to rerun.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    pipeline = data_processing.create_pipeline() + model_training.create_pipeline()
    with warnings.catch_warnings():
        # Kedro warns about dotted dataset names used outside their namespace, meant for
        # hand-written names; this one is the mini_xception namespace's own output.
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        return pipeline + transfer_learning.create_pipeline(
            run_after=[f"{model_training.DEFAULT_MODEL}.metrics"]
        )
