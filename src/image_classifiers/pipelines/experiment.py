"""Experiment pipelines: data and model pipelines in namespace ``<name>`` (data, parameters
``<name>.training`` ..., MLflow run), reading the dataset's groups ``<data>.download`` ..."""

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
