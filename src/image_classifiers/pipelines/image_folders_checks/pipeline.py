"""image_folders_checks: image_folders' data pipeline, then the data checks."""

from image_classifiers.pipelines.data_checks.pipeline import namespaced
from image_classifiers.pipelines.image_folders.pipeline import NAMESPACE


def create_pipeline(**kwargs):
    """Label issues, duplicates and balance of the split image_folders trains on."""
    return namespaced(NAMESPACE)
