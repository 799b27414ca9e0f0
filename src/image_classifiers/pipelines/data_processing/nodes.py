"""Node functions of the data_processing pipeline: download -> extract -> split -> decode.

The ``*_data`` functions are the nodes; they pick the step for the ``source`` parameters.

Each step lives in its own module beside this one; this module is the pipeline's public
face, so ``from image_classifiers.pipelines.data_processing.nodes import ...`` keeps the
Kedro starter convention.
"""

from .decode import (
    DecodeError,
    decode_split,
    make_split_decoder,
    report_data_quality,
)
from .download import ArchiveDownloadError, InvalidArchiveError, download_archive, verify_archive
from .extract import ArchiveExtractError, extract_images
from .keras_datasets import KerasDatasetError
from .sources import download_data, extract_data, split_data
from .split import SplitError, split_images

__all__ = [
    "ArchiveDownloadError",
    "ArchiveExtractError",
    "DecodeError",
    "InvalidArchiveError",
    "KerasDatasetError",
    "SplitError",
    "decode_split",
    "download_archive",
    "download_data",
    "extract_data",
    "extract_images",
    "make_split_decoder",
    "report_data_quality",
    "split_data",
    "split_images",
    "verify_archive",
]
