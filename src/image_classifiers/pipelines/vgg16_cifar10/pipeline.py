"""vgg16_cifar10: VGG16 pretrained on ImageNet, on CIFAR-10 at 32x32, one command.

CIFAR-10 (parameters ``cifar10.*``) and transfer_learning (VGG16 frozen under a Flatten ->
Dense 256 -> BN -> ReLU -> softmax head, then its last 4 layers unfrozen), all in namespace
``vgg16_cifar10``: parameters ``vgg16_cifar10.transfer``, ``.training`` ..., model
``data/06_models/vgg16_cifar10.keras``, one MLflow run.
"""

from image_classifiers.pipelines.experiment import experiment

NAMESPACE, DATA = "vgg16_cifar10", "cifar10"


def create_pipeline(**kwargs):
    return experiment(NAMESPACE, DATA, transfer=True)
