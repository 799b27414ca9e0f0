"""The retrain pipeline: incoming images -> challenger vs champion -> registration -> pool."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    archive_incoming,
    collect_images,
    decide_promotion,
    evaluate_challengers,
    register_challenger,
    train_challenger,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Collect -> train the challenger -> evaluate it (report, model card) -> decide ->
    register -> archive into the pool.

    Kedro has no conditional nodes (kedro-org/kedro#2410): "nothing new" is an empty mapping
    of challengers that each later node maps over.
    """
    return Pipeline(
        [
            Node(
                collect_images,
                ["train_set", "validation_set", "test_set", "params:retrain"],
                ["retrain_images", "retrain_delivery"],
                name="collect_images",
            ),
            Node(
                train_challenger,
                {
                    "train_set": "train_set",
                    "images": "retrain_images",
                    "delivery": "retrain_delivery",
                    "validation_set": "validation_set",
                    "models": "params:models",
                    "augmentation": "params:augmentation",
                    "training": "params:training",
                    "retrain": "params:retrain",
                },
                ["retrain_challengers", "retrain_histories"],
                name="train_challenger",
            ),
            Node(
                evaluate_challengers,
                {
                    "challengers": "retrain_challengers",
                    "histories": "retrain_histories",
                    "train_set": "train_set",
                    "validation_set": "validation_set",
                    "test_set": "test_set",
                    "evaluation": "params:evaluation",
                    "training": "params:training",
                    "retrain": "params:retrain",
                },
                # The reports, the cards' Markdown files, and the cards' texts for
                # register_challenger (catalog_retrain.yml).
                ["retrain_challenger_reports", "retrain_model_cards", "retrain_challenger_cards"],
                name="evaluate_challengers",
            ),
            Node(
                decide_promotion,
                ["retrain_challenger_reports", "test_set", "params:evaluation", "params:retrain"],
                "retrain_decisions",
                name="decide_promotion",
            ),
            Node(
                register_challenger,
                {
                    "challengers": "retrain_challengers",
                    "decisions": "retrain_decisions",
                    "model_cards": "retrain_challenger_cards",
                    "delivery": "retrain_delivery",
                    "test_set": "test_set",
                    "evaluation": "params:evaluation",
                    "export": "params:export",
                    "retrain": "params:retrain",
                },
                "retrain_registrations",
                name="register_challenger",
            ),
            Node(
                archive_incoming,
                ["retrain_delivery", "retrain_registrations", "params:retrain"],
                "retrain_report",
                name="archive_incoming",
            ),
        ]
    )
