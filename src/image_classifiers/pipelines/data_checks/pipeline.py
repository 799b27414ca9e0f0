"""data_checks: the main job's data pipeline, then the checks of its splits; ``checks`` puts
the same checks after any namespace's data pipeline (lenet_mnist_checks, image_folders_checks)."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.pipelines import data_processing
from image_classifiers.pipelines.data_processing.pipeline import OUTPUTS
from image_classifiers.pipelines.experiment import data_pipeline, quietly

from .nodes import check_data

OUTPUT_NAMES = [
    "label_issues",
    "near_duplicates",
    "class_balance",
    "data_checks_report",
    "label_suspects",
]


def checks(namespace: str | None = None, split: str = "params:split") -> Pipeline:
    """The checks node in ``namespace``, reading that namespace's splits, ``split`` (the
    dataset's split group: its duplicate thresholds) and the shared ``data_checks`` group."""
    node = Node(
        check_data,
        [*OUTPUTS, "params:split", "params:data_checks"],
        OUTPUT_NAMES,
        name="check_data",
    )
    if namespace is None:
        return Pipeline([node])
    splits = {name: f"{namespace}.{name}" for name in OUTPUTS}
    parameters = {"params:split": split, "params:data_checks": "params:data_checks"}
    return quietly(
        lambda: Pipeline([node], namespace=namespace, inputs=splits, parameters=parameters)
    )


def namespaced(namespace: str, data: str | None = None) -> Pipeline:
    """``namespace``'s data pipeline (reading ``<data>.*``), then its checks."""
    split = f"params:{data or namespace}.split"
    return data_pipeline(namespace, data) + checks(namespace, split)


def create_pipeline(**kwargs) -> Pipeline:
    """Download, split and decode the main job's data, then check it."""
    return data_processing.create_pipeline() + checks()
