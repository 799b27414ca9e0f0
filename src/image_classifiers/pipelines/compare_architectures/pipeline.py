"""The compare_architectures pipeline: train and evaluate several models, then compare them.

The DAG is the same whatever models are compared: ``train_architectures`` trains each model
listed under ``compare_architectures.models`` when it runs (so ``--params``, ``--env`` and
``conf/local`` all change the list), each in its own MLflow run; then one node tabulates and
one plots them all. Nothing is read from ``conf/`` when the pipeline is registered.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from image_classifiers.pipelines.model_training.pipeline import SHARED_PARAMETERS

from .nodes import compare_architectures, plot_architecture_comparison, train_architectures


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Train, evaluate and summarise each listed model, then compare them all.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).

    Returns:
        The pipeline; it reads the decoded splits and the ``compare_architectures``,
        ``models``, ``training``, ``augmentation``, ``evaluation`` and ``inspection``
        parameters.
    """
    return Pipeline(
        [
            node(
                train_architectures,
                {
                    "compare": "params:compare_architectures",
                    "models": "params:models",
                    "train_set": "train_set",
                    "validation_set": "validation_set",
                    "test_set": "test_set",
                    **{name: f"params:{name}" for name in SHARED_PARAMETERS},
                },
                [
                    "architecture_models",
                    "architecture_reports",
                    "architecture_plots",
                    "architecture_summaries",
                ],
                name="train_architectures",
            ),
            node(
                compare_architectures,
                "architecture_summaries",
                "architecture_comparison",
                name="compare_architectures",
            ),
            node(
                plot_architecture_comparison,
                "architecture_comparison",
                "architecture_comparison_plot",
                name="plot_architecture_comparison",
            ),
        ]
    )
