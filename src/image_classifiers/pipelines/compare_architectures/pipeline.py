"""The compare_architectures pipeline: train and evaluate several models, then compare them.

Each model listed under ``compare_architectures.models`` gets the whole ``model_training``
pipeline under its own namespace (so its own MLflow run, see ``image_classifiers.hooks``)
plus a ``summarise_training`` node (output ``<name>_training_summary``); one final node
tabulates and plots them all.

A Kedro DAG is fixed when pipelines are registered, before ``--params`` or ``--env`` are
known, so the list is read from ``conf/`` at that moment: ``conf/base`` merged with
``conf/$KEDRO_ENV`` (``conf/local`` when ``KEDRO_ENV`` is unset). To compare other models,
edit ``conf/base/parameters_compare_architectures.yml`` or override the list in
``conf/local/parameters_compare_architectures.yml``; for another environment run
``KEDRO_ENV=<env> kedro run --pipelines=compare_architectures``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.project import settings
from kedro.pipeline import Pipeline, node
from kedro.utils import find_kedro_project

from image_classifiers.pipelines import model_training

from .nodes import compare_architectures, plot_architecture_comparison, summarise_training

logger = logging.getLogger(__name__)

#: Used when no Kedro project (and so no conf/) can be found, e.g. outside the repository.
DEFAULT_MODELS = ("simple_convnet", "residual_convnet", "mini_xception")


def configured_models(project_path: Path | None = None) -> list[str]:
    """The model names listed under ``compare_architectures.models``, checked.

    Args:
        project_path: The Kedro project; found from the working directory if omitted.

    Returns:
        The model names, in the configured order; ``DEFAULT_MODELS`` when there is no
        project, no conf/ for the environment, or no ``compare_architectures`` section.

    Raises:
        ValueError: If the list is empty, repeats a name, or names a model with no
            ``models.<name>`` parameters.
    """
    project_path = project_path or find_kedro_project(Path.cwd())
    if project_path is None:
        return list(DEFAULT_MODELS)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(Path(project_path) / settings.CONF_SOURCE),
        env=os.environ.get("KEDRO_ENV"),
        **settings.CONFIG_LOADER_ARGS,
    )
    try:
        parameters = loader["parameters"]
    except MissingConfigException as exc:
        # Registration must not fail here; `kedro run` reports a broken conf/ itself.
        logger.debug("No parameters to read the model list from: %s", exc)
        return list(DEFAULT_MODELS)
    if "compare_architectures" not in parameters:
        # A project (or test fixture) without this pipeline's parameters still registers
        # every other pipeline; running this one then reports the missing parameters.
        return list(DEFAULT_MODELS)
    names = (parameters.get("compare_architectures") or {}).get("models")
    return check_model_names(names, parameters.get("models") or {})


def check_model_names(names: Any, models: dict[str, Any]) -> list[str]:
    """Check the configured list against the ``models`` parameters (see ``configured_models``)."""
    where = "compare_architectures.models in conf/base/parameters_compare_architectures.yml"
    if not isinstance(names, list | tuple) or not names:
        raise ValueError(f"Set {where} to a non-empty list of model names, got {names!r}.")
    names = [str(name) for name in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{where} lists {repeated} more than once; each model trains once.")
    unknown = [name for name in names if name not in models]
    if unknown:
        raise ValueError(
            f"{where} lists {unknown}, which have no models.<name> parameters. Add them to "
            f"the models section of conf/base/parameters_model_training.yml or choose from: "
            f"{', '.join(sorted(models))}."
        )
    return names


def summary_dataset(model_name: str) -> str:
    """Name of the dataset holding ``summarise_training``'s output for ``model_name``."""
    return f"{model_name}_training_summary"


def create_pipeline(models: Sequence[str] | None = None, **kwargs: Any) -> Pipeline:
    """Train, evaluate and summarise each model, then compare them all.

    Args:
        models: Model names (keys of the ``models`` parameters); read from
            ``compare_architectures.models`` in ``conf/`` when omitted.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).

    Returns:
        The pipeline; model ``<name>``'s nodes and datasets live under namespace ``<name>``.
    """
    names = list(models) if models is not None else configured_models()
    summary = Pipeline(
        [
            node(
                summarise_training,
                ["model", "metrics", "training_history", "params:model_options"],
                "training_summary",
                name="summarise_training",
            )
        ]
    )
    per_model = [
        model_training.create_pipeline(model_name=name)
        + Pipeline(
            summary,
            namespace=name,
            parameters={"params:model_options": f"params:models.{name}"},
            # Leaves the namespace under a plain name: the comparison node outside it reads it.
            outputs={"training_summary": summary_dataset(name)},
        )
        for name in names
    ]
    comparison = Pipeline(
        [
            node(
                compare_architectures,
                {name: summary_dataset(name) for name in names},
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
    return sum(per_model, Pipeline([])) + comparison
