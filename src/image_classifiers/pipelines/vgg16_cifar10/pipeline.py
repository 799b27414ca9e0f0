"""The vgg16_cifar10 pipeline: VGG16 pretrained on ImageNet, on CIFAR-10 at 32x32.

The CIFAR-10 data (parameters ``cifar10.*``) and the ``transfer_learning`` pipeline (VGG16
base frozen under a Flatten -> Dense 256 -> BN -> ReLU -> softmax head, then its last 4
layers unfrozen), all in namespace ``vgg16_cifar10``: parameters ``vgg16_cifar10.transfer``,
``.training`` ..., model ``data/06_models/vgg16_cifar10.keras``, reports under
``data/08_reporting/vgg16_cifar10/``, one MLflow run.
"""

from kedro.pipeline import Pipeline

from image_classifiers.pipelines import transfer_learning
from image_classifiers.pipelines.data_processing.pipeline import OUTPUTS
from image_classifiers.pipelines.experiment import data_pipeline, quietly
from image_classifiers.pipelines.transfer_learning.pipeline import SHARED_PARAMETERS

NAMESPACE = "vgg16_cifar10"
DATA = "cifar10"


def create_pipeline(**kwargs) -> Pipeline:
    """Data -> build -> feature extraction -> fine-tuning -> evaluation, in vgg16_cifar10.

    Args:
        **kwargs: Ignored (Kedro's ``find_pipelines`` convention).
    """
    model = quietly(
        lambda: Pipeline(
            transfer_learning.create_pipeline(namespace=NAMESPACE),
            inputs={name: f"{NAMESPACE}.{name}" for name in OUTPUTS},
            parameters={
                f"params:{name}": f"params:{NAMESPACE}.{name}" for name in SHARED_PARAMETERS
            },
        )
    )
    return data_pipeline(NAMESPACE, DATA) + model
