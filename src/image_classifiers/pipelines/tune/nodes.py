"""Nodes of the tune pipeline: which nodes of the target train its model, and the study node.

The study itself (``study.py``) needs the optional extra ``tune`` (Optuna): imported when the
node runs, so that every other pipeline registers and runs without it."""

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kedro.pipeline import Node, Pipeline

from image_classifiers.core.params import (
    AugmentationParams,
    ModelOptions,
    TrainingParams,
    TuneParams,
)
from image_classifiers.pipelines import __name__ as PIPELINES
from image_classifiers.pipelines import __path__ as PIPELINE_FOLDERS
from image_classifiers.pipelines.model_training.nodes import build_model, train_model


def target_nodes(target: str) -> tuple[Pipeline, Node, Node]:
    """The pipeline ``target``, its ``build_model`` and its ``train_model`` node; a
    ``ValueError`` unless it trains exactly one model with model_training's nodes."""
    folders = pkgutil.iter_modules(PIPELINE_FOLDERS)
    names = sorted(m.name for m in folders if m.ispkg and m.name != "tune")  # not itself
    if target not in names:
        raise ValueError(
            f"tune.target '{target}' is no training pipeline; one of: {', '.join(names)}"
        )
    pipeline = importlib.import_module(f"{PIPELINES}.{target}").create_pipeline()
    builds = [node for node in pipeline.nodes if node.func is build_model]
    trains = [node for node in pipeline.nodes if node.func is train_model]
    if len(builds) != 1 or len(trains) != 1:
        raise ValueError(
            f"tune.target '{target}' trains {len(trains)} models with model_training's nodes; "
            "tune searches a pipeline that trains one (model_training, lenet_mnist, ...)"
        )
    return pipeline, builds[0], trains[0]


def parameter_names(build: Node) -> dict[str, str]:
    """The target's parameter key of each tunable group (``lenet_mnist.training``)."""
    options, augmentation, training = (name.removeprefix("params:") for name in build.inputs[1:])
    return {"training": training, "augmentation": augmentation, "model_options": options}


def tuned_parameters(target: str, params: dict[str, Any]) -> dict[str, Any]:
    """``{"training.learning_rate": v}`` as the target's own keys, nested (a conf env's YAML)."""
    names = parameter_names(target_nodes(target)[1])
    tree: dict[str, Any] = {}
    for name, value in params.items():
        group, key = name.split(".", 1)
        node = tree
        for part in [*names[group].split("."), key][:-1]:
            node = node.setdefault(part, {})
        node[key] = value
    return tree


def study_module() -> ModuleType:
    """``study.py``, or a ``ValueError`` naming the extra to install."""
    try:
        return importlib.import_module(f"{__package__}.study")
    except ModuleNotFoundError as error:
        raise ValueError(
            f"tune needs {error.name}: pip install 'image-classifiers[tune]'"
        ) from error


def check_search(tune: TuneParams, load: Callable[[str], Any]) -> None:
    """Open the study (checking the space, storage and name) with the target's groups, as
    ``load("lenet_mnist.training")`` gives them: before the run's first node."""
    names = parameter_names(target_nodes(tune.target)[1])
    study_module().open_study(tune, {group: load(name) for group, name in names.items()})


def run_study(  # noqa: PLR0917 (the target's data and groups, as Kedro passes them)
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    tune: TuneParams,
    training: TrainingParams,
    augmentation: AugmentationParams | None,
    model_options: ModelOptions,
) -> tuple[dict[str, Any], dict[str, Any], Any, Any, Any]:
    """Check the space, open (or resume) the study, run the trials in ``tune.n_workers``
    processes; the best parameters (a report and a conf environment), trials, and plots."""
    groups = {"training": training, "augmentation": augmentation, "model_options": model_options}
    report, table, figures = study_module().run_search(train_set, validation_set, tune, groups)
    return report, tuned_parameters(tune.target, report["params"]), table, *figures
