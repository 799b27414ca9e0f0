"""vgg16_cifar10: VGG16 pretrained on ImageNet, frozen under a new head then its last 4 layers
unfrozen, on CIFAR-10 at 32x32; data, model, reports and MLflow run in namespace vgg16_cifar10."""

from image_classifiers.pipelines.experiment import experiment

NAMESPACE, DATA = "vgg16_cifar10", "cifar10"


def create_pipeline(**kwargs):
    return experiment(NAMESPACE, DATA, transfer=True)
