"""The retrain pipeline: incoming images -> challenger vs champion -> registration -> pool."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    archive_incoming,
    collect_images,
    decide_promotion,
    register_challenger,
    train_challenger,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Collect -> train the challenger -> decide -> register -> archive into the pool.

    Each node takes what the one before produced: the images (pool and new), the challenger
    (``None`` when nothing is new: the one place that decides whether to train), the decision,
    the registration. The incoming folder changes only in the last node, which files the
    run's images into the pool (``retrain.processed_dir``), so a failure anywhere before
    leaves incoming files and pool as they were.
    """
    return Pipeline(
        [
            Node(
                collect_images,
                ["train_set", "validation_set", "test_set", "params:retrain"],
                "retrain_images",
                name="collect_images",
            ),
            Node(
                train_challenger,
                {
                    "train_set": "train_set",
                    "images": "retrain_images",
                    "validation_set": "validation_set",
                    "models": "params:models",
                    "augmentation": "params:augmentation",
                    "training": "params:training",
                    "retrain": "params:retrain",
                },
                "retrain_challenger",
                name="train_challenger",
            ),
            Node(
                decide_promotion,
                ["retrain_challenger", "test_set", "params:evaluation", "params:retrain"],
                "retrain_decision",
                name="decide_promotion",
            ),
            Node(
                register_challenger,
                {
                    "challenger": "retrain_challenger",
                    "decision": "retrain_decision",
                    "images": "retrain_images",
                    "evaluation": "params:evaluation",
                    "retrain": "params:retrain",
                },
                "retrain_registration",
                name="register_challenger",
            ),
            Node(
                archive_incoming,
                ["retrain_images", "retrain_registration", "params:retrain"],
                "retrain_report",
                name="archive_incoming",
            ),
        ]
    )
