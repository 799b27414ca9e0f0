"""xception_cats, the main job: raw archive -> decoded images -> mini-Xception -> transfer
learning. A folder of its own so that Kedro's selective loading finds it."""

from image_classifiers.pipelines import data_processing, model_training, transfer_learning


def create_pipeline(**kwargs):
    """Data, the from-scratch mini-Xception and transfer learning, each model in its own
    namespace and MLflow run. Kedro runs them in topological order: both models are built
    (the pretrained base fetches its weights) before either trains, so unreachable ImageNet
    weights stop the run in seconds, not after the from-scratch training."""
    return (
        data_processing.create_pipeline()
        + model_training.create_pipeline()
        + transfer_learning.create_pipeline()
    )
