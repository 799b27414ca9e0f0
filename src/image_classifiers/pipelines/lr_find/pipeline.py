"""lr_find: ``kedro run --pipelines=lr_find --params="lr_find.target=<pipeline>"`` runs what
the target pipeline runs up to its model's training (its data pipeline, if it has one, and
``build_model``), then the LR range test in place of the training, in the target's
namespace: ``data/08_reporting/<model>/lr_find.{json,png}``, logged to the model's MLflow run.

Kedro builds pipelines without parameters, so ``LrFindTargetHook`` reads ``lr_find.target``
(conf or ``--params``) when the run's context is created, before Kedro builds the pipelines.
"""

import importlib
import pkgutil

from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro.pipeline import Node, Pipeline

from image_classifiers.core.params import LrFindParams

from .nodes import find_learning_rate

_target = {"name": LrFindParams.model_fields["target"].default, "built": None}


def target_pipeline(target: str) -> Pipeline:
    """The lr_find pipeline for the pipeline ``target``; a ``ValueError`` naming the usable
    targets when ``target`` is none or does not train exactly one model."""
    module = f"image_classifiers.pipelines.{target}"
    try:
        pipeline = importlib.import_module(module).create_pipeline()
    except (ModuleNotFoundError, AttributeError):
        pipeline = Pipeline([])
    training = [node for node in pipeline.nodes if node.name.endswith("train_model")]
    if len(training) != 1:
        raise ValueError(
            f"lr_find.target is {target!r}, which is not a pipeline that trains one model; "
            f"choose one of: {', '.join(_usable_targets())}."
        )
    train = training[0]
    model, train_set, _, params = train.inputs
    namespace = train.namespace
    upstream = pipeline.to_nodes(train.name) - Pipeline([train])  # data, build_model
    node = Node(
        find_learning_rate,
        [model, train_set, params, "params:lr_find"],
        [f"{namespace}.lr_find", f"{namespace}.lr_find_plot"],
        name="find_learning_rate",
        namespace=namespace,
    )
    return upstream + Pipeline([node])


def _usable_targets() -> list[str]:
    """The pipelines that train exactly one model (imports them all: for error messages)."""
    names = []
    package = importlib.import_module("image_classifiers.pipelines")
    for module in pkgutil.iter_modules(package.__path__):
        pipeline = getattr(
            importlib.import_module(f"{package.__name__}.{module.name}"), "create_pipeline", None
        )
        if module.name != "lr_find" and pipeline is not None:
            nodes = pipeline().nodes
            if sum(node.name.endswith("train_model") for node in nodes) == 1:
                names.append(module.name)
    return names


def create_pipeline(**kwargs) -> Pipeline:
    """The lr_find pipeline for the target ``LrFindTargetHook`` read (``lr_find.target``'s
    default when no run set it, e.g. for kedro-viz)."""
    _target["built"] = _target["name"]
    return target_pipeline(_target["name"])


class LrFindTargetHook:
    """Reads ``lr_find.target`` before Kedro builds the pipelines, and checks it."""

    @hook_impl
    def after_context_created(self, context) -> None:
        """Note (and check) the target; rebuild the pipelines if lr_find has another one."""
        params = context.config_loader["parameters"].get("lr_find") or {}
        target = params.get("target") or LrFindParams.model_fields["target"].default
        if target == _target["name"]:
            return
        target_pipeline(target)  # a wrong target stops the run here, with its message
        _target["name"] = target
        if _target["built"] not in (None, target):  # a second run in this process
            pipelines.configure(f"{__name__.split('.')[0]}.pipeline_registry")
