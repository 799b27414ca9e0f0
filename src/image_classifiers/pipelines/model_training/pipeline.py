"""The model_training pipeline: build -> train -> evaluate one classifier per namespace."""

from kedro.pipeline import Pipeline, node

from .inspection import inspect_model
from .nodes import build_model, evaluate_model, plot_training_curves, train_model

SHARED_PARAMETERS = ("training", "augmentation", "evaluation", "inspection")

# The model trained by `kedro run --pipelines=model_training` (and xception_cats).
DEFAULT_MODEL = "mini_xception"


def create_pipeline(model_name: str = DEFAULT_MODEL, **kwargs) -> Pipeline:
    """Create the pipeline for the model configured under ``models.<model_name>``.

    Every dataset and node lives under the namespace ``model_name`` (``mini_xception.model``
    -> data/06_models/mini_xception.keras), so the same pipeline can train several models
    side by side. The decoded splits and the ``training``, ``augmentation``, ``evaluation``
    and ``inspection`` parameters are shared by all of them.

    Args:
        model_name: A key of the ``models`` parameters.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).

    Returns:
        The namespaced pipeline.
    """
    template = Pipeline(
        [
            node(
                build_model,
                ["train_set", "params:model_options", "params:augmentation", "params:training"],
                "untrained_model",
                name="build_model",
            ),
            node(
                train_model,
                ["untrained_model", "train_set", "validation_set", "params:training"],
                ["model", "training_history"],
                name="train_model",
            ),
            node(
                evaluate_model,
                ["model", "test_set", "params:evaluation"],
                ["metrics", "confusion_matrix_plot", "misclassified_plot"],
                name="evaluate_model",
            ),
            node(
                inspect_model,
                ["model", "test_set", "params:inspection", "params:evaluation"],
                ["feature_maps_plot", "grad_cam_plot"],
                name="inspect_model",
            ),
            node(
                plot_training_curves,
                "training_history",
                "training_curves_plot",
                name="plot_training_curves",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=model_name,
        inputs={"train_set", "validation_set", "test_set"},
        parameters={
            "params:model_options": f"params:models.{model_name}",
            **{f"params:{name}": f"params:{name}" for name in SHARED_PARAMETERS},
        },
    )
