"""The model_training pipeline: build -> train -> evaluate one classifier per namespace."""

from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from .inspection import inspect_model
from .nodes import build_model, evaluate_model, plot_training_curves, train_model

SHARED_PARAMETERS = ("training", "augmentation", "evaluation", "inspection")

# The model trained by `kedro run --pipelines=model_training` (and xception_cats).
DEFAULT_MODEL = "mini_xception"


def evaluation_pipeline(plot_curves: Callable = plot_training_curves) -> Pipeline:
    """What every trained ``model`` gets: test metrics and figures, inspection, curves.

    Shared by model_training, both phases of transfer_learning and the experiments; a
    caller renames the datasets (``model``, ``metrics``, ...) with ``Pipeline(inputs=,
    outputs=)`` or a namespace.

    Args:
        plot_curves: Turns ``training_history`` into ``training_curves_plot``.
    """
    return Pipeline(
        [
            Node(
                evaluate_model,
                ["model", "test_set", "params:evaluation"],
                ["metrics", "confusion_matrix_plot", "misclassified_plot"],
                name="evaluate_model",
            ),
            Node(
                inspect_model,
                ["model", "test_set", "params:inspection", "params:evaluation"],
                ["feature_maps_plot", "grad_cam_plot"],
                name="inspect_model",
            ),
            Node(
                plot_curves, "training_history", "training_curves_plot", name="plot_training_curves"
            ),
        ]
    )


def create_pipeline(model_name: str = DEFAULT_MODEL, **kwargs) -> Pipeline:
    """The model ``models.<model_name>``, in namespace ``model_name``.

    ``mini_xception.model`` -> data/06_models/mini_xception.keras (catalog factories), so
    the same pipeline trains several models side by side; the decoded splits and the shared
    parameters stay outside the namespace.

    Args:
        model_name: A key of the ``models`` parameters.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    training = Pipeline(
        [
            Node(
                build_model,
                ["train_set", "params:model_options", "params:augmentation", "params:training"],
                "untrained_model",
                name="build_model",
            ),
            Node(
                train_model,
                ["untrained_model", "train_set", "validation_set", "params:training"],
                ["model", "training_history"],
                name="train_model",
            ),
        ]
    )
    return Pipeline(
        training + evaluation_pipeline(),
        namespace=model_name,
        inputs={"train_set", "validation_set", "test_set"},
        parameters={
            "params:model_options": f"params:models.{model_name}",
            **{f"params:{name}": f"params:{name}" for name in SHARED_PARAMETERS},
        },
    )
