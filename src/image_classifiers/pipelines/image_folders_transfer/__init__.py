"""image_folders_transfer: the image_folders pipeline with an ImageNet base."""

from image_classifiers.pipelines.image_folders.pipeline import create_transfer_pipeline

create_pipeline = create_transfer_pipeline
