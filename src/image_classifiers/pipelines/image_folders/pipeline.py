"""The image_folders pipeline: a user's class folders -> trained, evaluated classifier.

The data pipeline and the model_training pipeline, both under the namespace
``image_folders``: parameters ``image_folders.download``, ``image_folders.split``,
``image_folders.training`` ... (conf/base/parameters_image_folders.yml), data under
``data/*/image_folders``, the model at ``data/06_models/image_folders.keras`` and its reports
under ``data/08_reporting/image_folders/``, one MLflow run of its own.
"""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import data_processing, model_training, transfer_learning
from image_classifiers.pipelines.data_processing.pipeline import OUTPUTS
from image_classifiers.pipelines.model_training.pipeline import SHARED_PARAMETERS

NAMESPACE = "image_folders"


def create_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data pipeline (class_folders source) + model pipeline, all in ``namespace``.

    Args:
        namespace: The namespace (and parameter group) to run in.
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    data = data_processing.create_pipeline(namespace=namespace)
    # model_training names its datasets and nodes after the model's namespace and reads the
    # shared parameters (training, augmentation, evaluation); here they all move into this
    # pipeline's namespace, and the model options come from `<namespace>.model_options`
    # (which picks a configured model, see the parameters file).
    model = Pipeline(
        model_training.create_pipeline(model_name=namespace),
        inputs={name: f"{namespace}.{name}" for name in OUTPUTS},
        parameters={
            f"params:models.{namespace}": f"params:{namespace}.model_options",
            **{f"params:{name}": f"params:{namespace}.{name}" for name in SHARED_PARAMETERS},
        },
    )
    return data + model


def create_transfer_pipeline(namespace: str = NAMESPACE, **kwargs) -> Pipeline:
    """Data pipeline + the transfer_learning pipeline (an ImageNet base), in ``namespace``.

    Registered as ``image_folders_transfer``; the base and both phases are set by
    ``image_folders.transfer`` (default: the project's ``transfer`` group), e.g.
    ``--params="image_folders.transfer.base=xception"``. Its datasets are
    ``<namespace>.transfer.*``: ``data/06_models/image_folders.transfer.keras`` and reports
    under ``data/08_reporting/image_folders.transfer/``.

    Args:
        namespace: The namespace (and parameter group) to run in.
        **kwargs: Ignored.
    """
    data = data_processing.create_pipeline(namespace=namespace)
    # Inside the namespace, transfer_learning's own "transfer" namespace becomes
    # "<namespace>.transfer" and its shared parameters "<namespace>.transfer" ...
    model = Pipeline(transfer_learning.create_pipeline(), namespace=namespace)
    return data + model
