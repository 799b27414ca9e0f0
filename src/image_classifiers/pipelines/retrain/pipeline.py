"""The retrain pipeline: incoming images -> challenger vs champion -> promotion -> pool."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    archive_incoming,
    collect_incoming,
    decide_promotion,
    evaluate_challenger,
    evaluate_champion,
    register_challenger,
    train_challenger,
    update_training_pool,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Collect -> train challenger -> evaluate both -> decide -> register -> pool -> archive.

    The pool (``training_pool_updated`` is the same folder as ``training_pool``) and the
    incoming folder change only in the last two nodes, which depend on the registration, so
    a failure anywhere before leaves both as they were.
    """
    return Pipeline(
        [
            Node(
                collect_incoming,
                ["train_set", "validation_set", "test_set", "training_pool", "params:retrain"],
                "retrain_incoming",
                name="collect_incoming",
            ),
            Node(
                train_challenger,
                {
                    "train_set": "train_set",
                    "training_pool": "training_pool",
                    "incoming": "retrain_incoming",
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
                evaluate_challenger,
                ["retrain_challenger", "test_set", "params:evaluation"],
                "retrain_challenger_metrics",
                name="evaluate_challenger",
            ),
            Node(
                evaluate_champion,
                ["retrain_incoming", "test_set", "params:evaluation", "params:retrain"],
                "retrain_champion_metrics",
                name="evaluate_champion",
            ),
            Node(
                decide_promotion,
                [
                    "retrain_challenger_metrics",
                    "retrain_champion_metrics",
                    "retrain_incoming",
                    "params:retrain",
                ],
                "retrain_decision",
                name="decide_promotion",
            ),
            Node(
                register_challenger,
                {
                    "challenger": "retrain_challenger",
                    "challenger_metrics": "retrain_challenger_metrics",
                    "decision": "retrain_decision",
                    "incoming": "retrain_incoming",
                    "evaluation": "params:evaluation",
                    "retrain": "params:retrain",
                },
                "retrain_promotion",
                name="register_challenger",
            ),
            Node(
                update_training_pool,
                ["training_pool", "retrain_incoming", "retrain_promotion"],
                "training_pool_updated",
                name="update_training_pool",
            ),
            Node(
                archive_incoming,
                [
                    "training_pool_updated",
                    "retrain_incoming",
                    "retrain_promotion",
                    "params:retrain",
                ],
                "retrain_report",
                name="archive_incoming",
            ),
        ]
    )
