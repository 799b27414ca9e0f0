"""How the experiment pipelines are put together (lenet_mnist, cnn_fashion_mnist, cnn_cifar10,
vgg16_cifar10): the one data pipeline and the model pipelines, each in its own namespace.

An experiment ``<name>`` runs the data pipeline in namespace ``<name>`` (datasets
``<name>.train_set`` ... under ``data/0x_*/<name>/``) reading the dataset's parameter groups
``<data>.source``, ``<data>.download`` ... (``mnist``, ``fashion_mnist``, ``cifar10``: one
spelling per dataset, e.g. ``--params="mnist.download.local_path=/abs/mnist.npz"``), then
trains in namespace ``<name>`` (or one namespace per variant) with the model parameters
``<name>.model_options``, ``<name>.training``, ``<name>.augmentation``, ``<name>.evaluation``
and ``<name>.inspection``. So no dataset, model file, report or MLflow run of one
experiment collides with another's or with ``xception_cats``' (see ``hooks.ModelRunsHook``:
one MLflow run per top-level namespace).
"""

from __future__ import annotations

import warnings

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import data_processing, model_training
from image_classifiers.pipelines.data_processing.pipeline import OUTPUTS
from image_classifiers.pipelines.model_training.pipeline import SHARED_PARAMETERS

#: The data pipeline's parameter groups.
DATA_GROUPS = ("source", "download", "extract", "split", "decode")


def quietly(build):
    """Build a pipeline without Kedro's warning about dotted dataset names: meant for
    hand-written names, here they are namespaces' own datasets."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        return build()


def data_pipeline(namespace: str, data: str) -> Pipeline:
    """The data pipeline in ``namespace``, reading the parameter groups ``<data>.*``."""
    return quietly(
        lambda: Pipeline(
            data_processing.create_pipeline(namespace=namespace),
            parameters={
                f"params:{namespace}.{group}": f"params:{data}.{group}" for group in DATA_GROUPS
            },
        )
    )


def model_pipeline(namespace: str, data_namespace: str) -> Pipeline:
    """``model_training`` in ``namespace`` on ``data_namespace``'s splits, with the
    parameters ``<namespace>.model_options``, ``<namespace>.training`` ..."""
    return quietly(
        lambda: Pipeline(
            model_training.create_pipeline(model_name=namespace),
            inputs={name: f"{data_namespace}.{name}" for name in OUTPUTS},
            parameters={
                f"params:models.{namespace}": f"params:{namespace}.model_options",
                **{f"params:{name}": f"params:{namespace}.{name}" for name in SHARED_PARAMETERS},
            },
        )
    )


def experiment(name: str, data: str) -> Pipeline:
    """Data pipeline + one model, all in namespace ``name``."""
    return data_pipeline(name, data) + model_pipeline(name, name)
