"""image_folders: a user's class folders (or zip) -> a trained, evaluated classifier, all in
namespace ``image_folders`` (parameters ``image_folders.download``, ``.training`` ...)."""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import transfer_learning
from image_classifiers.pipelines.experiment import data_pipeline, experiment

NAMESPACE = "image_folders"


def create_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data + the model ``<namespace>.model_options`` picks: ``data/06_models/image_folders
    .keras``, reports in ``data/08_reporting/image_folders/``."""
    return experiment(namespace)


def create_transfer_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data + transfer_learning, registered as ``image_folders_transfer``: the base and both
    phases set by ``image_folders.transfer`` (``--params="image_folders.transfer.base=
    xception"``), datasets ``<namespace>.transfer.*`` (``data/06_models/image_folders.transfer
    .keras``, reports in ``data/08_reporting/image_folders.transfer/``)."""
    transfer = Pipeline(transfer_learning.create_pipeline(), namespace=namespace)
    return data_pipeline(namespace) + transfer
