"""xception_cats, the main job: raw archive -> decoded images -> mini-Xception -> transfer
learning. A folder of its own so that Kedro's selective loading finds it."""

from image_classifiers.pipelines import data_processing, model_training, transfer_learning
from image_classifiers.pipelines.experiment import quietly


def create_pipeline(**kwargs):
    """Data, the from-scratch mini-Xception, then transfer learning, which waits for the
    former's model card (its last output, so Kedro orders every from-scratch node first): if it
    fails (e.g. ImageNet weights unreachable) the trained model, its
    reports and MLflow run are saved; only ``--pipelines=transfer_learning`` is left to rerun.
    """
    after = [f"{model_training.DEFAULT_MODEL}.model_card"]
    transfer = quietly(lambda: transfer_learning.create_pipeline(run_after=after))
    return data_processing.create_pipeline() + model_training.create_pipeline() + transfer
