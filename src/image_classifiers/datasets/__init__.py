"""Kedro datasets for decoded image sets and Keras models."""

from .image_set_dataset import ImageSetDataset
from .keras_model_dataset import KerasModelDataset

__all__ = ["ImageSetDataset", "KerasModelDataset"]
