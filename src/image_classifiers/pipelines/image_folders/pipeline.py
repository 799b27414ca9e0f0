"""The image_folders pipelines: a user's class folders (or zip) -> a trained, evaluated model.

The data pipeline and a model pipeline, all in namespace ``image_folders``: parameters
``image_folders.download``, ``.split``, ``.training`` ... (conf/base/parameters_image_folders
.yml), data under ``data/*/image_folders``, one MLflow run of its own.
"""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import transfer_learning
from image_classifiers.pipelines.experiment import data_pipeline, experiment

NAMESPACE = "image_folders"


def create_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data pipeline + the model ``<namespace>.model_options`` picks, in ``namespace``:
    ``data/06_models/image_folders.keras``, reports in ``data/08_reporting/image_folders/``."""
    return experiment(namespace)


def create_transfer_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data pipeline + transfer_learning (an ImageNet base), in ``namespace``.

    Registered as ``image_folders_transfer``; the base and both phases are set by
    ``image_folders.transfer`` (e.g. ``--params="image_folders.transfer.base=xception"``).
    Its datasets are ``<namespace>.transfer.*``: ``data/06_models/image_folders.transfer.keras``,
    reports in ``data/08_reporting/image_folders.transfer/``.
    """
    return data_pipeline(namespace) + Pipeline(
        transfer_learning.create_pipeline(), namespace=namespace
    )
