"""How the experiment pipelines are put together: the data pipeline and a model pipeline,
each in the experiment's namespace.

Experiment ``<name>`` runs the data pipeline in namespace ``<name>`` (``<name>.train_set``
... under ``data/0x_*/<name>/``) with the dataset's parameter groups ``<data>.source``,
``<data>.download`` ... (one spelling per dataset, e.g. ``--params="mnist.download.
local_path=/abs/mnist.npz"``), then trains in namespace ``<name>`` (or one per variant) with
``<name>.model_options``, ``<name>.training`` ... So nothing of one experiment, its MLflow
run included (one per top-level namespace), collides with another's.
"""

from __future__ import annotations

import warnings

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import data_processing, model_training, transfer_learning
from image_classifiers.pipelines.data_processing.pipeline import OUTPUTS

DATA_GROUPS = ("source", "download", "extract", "split", "decode")


def quietly(build):
    """``build()`` without Kedro's warning about dotted dataset names, meant for names
    written by hand: these are namespaces' own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        return build()


def data_pipeline(namespace: str, data: str | None = None) -> Pipeline:
    """The data pipeline in ``namespace``, reading ``<data>.*`` (default: its own groups)."""
    groups = {f"params:{namespace}.{g}": f"params:{data}.{g}" for g in DATA_GROUPS if data}
    pipeline = data_processing.create_pipeline(namespace=namespace)
    return quietly(lambda: Pipeline(pipeline, parameters=groups))


def model_pipeline(namespace: str, data_namespace: str, transfer: bool = False) -> Pipeline:
    """model_training (transfer_learning) in ``namespace`` on ``data_namespace``'s splits,
    with the parameters ``<namespace>.model_options`` (``.transfer``), ``.training`` ..."""
    module = transfer_learning if transfer else model_training
    groups = {f"params:{g}": f"params:{namespace}.{g}" for g in module.pipeline.SHARED_PARAMETERS}
    if not transfer:
        groups[f"params:models.{namespace}"] = f"params:{namespace}.model_options"
    model = module.create_pipeline(namespace)
    splits = {name: f"{data_namespace}.{name}" for name in OUTPUTS}
    return quietly(lambda: Pipeline(model, inputs=splits, parameters=groups))


def experiment(name: str, data: str | None = None, transfer: bool = False) -> Pipeline:
    """Data pipeline + one model, all in namespace ``name``."""
    return data_pipeline(name, data) + model_pipeline(name, name, transfer)
