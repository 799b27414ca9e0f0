"""Batch prediction: a folder or zip of images -> one row of class probabilities per file."""

import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from image_classifiers.core.images import available_cpus
from image_classifiers.core.params import PredictParams
from image_classifiers.core.probabilities import apply_temperature
from image_classifiers.core.training import predict_probabilities
from image_classifiers.payloads import LABEL_COLUMN, probability_column, probability_frame
from image_classifiers.serving import LoadedClassifier, load_classifier, model_image_size

from .sources import ImageFile, iter_image_files

logger = logging.getLogger(__name__)

FILE_COLUMN = "file"
ERROR_COLUMN = "error"
_PROGRESS_SECONDS = 10.0


def load_prediction_model(predict: PredictParams) -> LoadedClassifier:
    """Load ``predict.model``, a registry URI or a ``.keras`` file (so not kedro-mlflow's
    ``MlflowModelRegistryDataset``). A URI that names no model is an error, never another
    model: a misspelt alias must not quietly predict with a rejected challenger."""
    source = predict.model
    if not source:
        raise ValueError(
            "Set predict.model to a registry URI (models:/cats_vs_dogs@champion) or a .keras "
            'file: kedro run --pipelines=predict --params="predict.model=data/06_models/x.keras"'
        )
    logger.info("Loading the model from %s ...", source)
    classifier = load_classifier(source)
    if classifier.classes is None:
        classifier.classes = list(predict.classes or [])
    elif predict.classes and predict.classes != classifier.classes:
        logger.warning(
            "predict.classes %s differ from the classes the model was logged with %s; "
            "using the model's.",
            predict.classes,
            classifier.classes,
        )
    if not classifier.classes:
        raise ValueError(
            f"The model at '{source}' does not carry its class names: set predict.classes "
            "(in the model's class-index order)."
        )
    if classifier.temperature not in (None, 1.0):
        logger.info("Calibrated probabilities: temperature %.3f.", classifier.temperature)
    if predict.threshold is not None:
        classifier.threshold = predict.threshold
    elif classifier.threshold is None:
        classifier.threshold = 0.5
    return classifier


def predict_images(predict: PredictParams) -> pd.DataFrame:
    """One row per image file of ``predict.source``, in name order, with its ``error`` if any.

    Decoded in threads and classified a batch at a time: memory stays flat however many images.
    """
    classifier = load_prediction_model(predict)
    source, batch_size = predict.source, predict.batch_size
    workers = predict.decode_workers or available_cpus()
    image_size = model_image_size(classifier.model, predict.image_size)
    probability_columns = [probability_column(c) for c in classifier.classes]
    columns = [FILE_COLUMN, *probability_columns, LABEL_COLUMN, ERROR_COLUMN]
    logger.info(
        "Predicting the images of '%s' with %s (%dx%d, batches of %d) ...",
        source,
        classifier.source,
        *image_size,
        batch_size,
    )
    frames = []
    start = last = time.monotonic()
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        files = iter_image_files(source, predict.archive_limits)
        for batch in iter(lambda: list(itertools.islice(files, batch_size)), []):
            decoded = list(pool.map(lambda f: f.decoded(image_size), batch))
            frames.append(_classify_batch(classifier, batch, decoded, batch_size))
            failed += sum(isinstance(image, str) for image in decoded)
            if time.monotonic() - last >= _PROGRESS_SECONDS:
                last = time.monotonic()
                _log_progress(sum(map(len, frames)), failed, start, "so far")
    if not frames:
        logger.warning("No image files (.jpg, .png, ...) in '%s'.", source)
        return pd.DataFrame(columns=columns)
    predictions = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    _log_progress(len(predictions), failed, start, "in all")
    return predictions


def summarize_predictions(predictions: pd.DataFrame) -> dict[str, Any]:
    """Counts per predicted label and the files that could not be read."""
    failed = predictions[predictions[ERROR_COLUMN].notna()]
    summary = {
        "images": len(predictions),
        "predicted": int(predictions[LABEL_COLUMN].notna().sum()),
        "per_label": {str(k): int(v) for k, v in predictions[LABEL_COLUMN].value_counts().items()},
        "unreadable": len(failed),
        "unreadable_files": failed[[FILE_COLUMN, ERROR_COLUMN]].to_dict("records"),
    }
    if len(failed):
        logger.warning(
            "%d of %d files could not be read (listed in the 'error' column), e.g. %s: %s",
            len(failed),
            len(predictions),
            failed.iloc[0][FILE_COLUMN],
            failed.iloc[0][ERROR_COLUMN],
        )
    return summary


def _classify_batch(
    classifier: LoadedClassifier,
    batch: list[ImageFile],
    decoded: list[np.ndarray | str],
    batch_size: int,
) -> pd.DataFrame:
    good = [i for i, image in enumerate(decoded) if not isinstance(image, str)]
    errors = [image if isinstance(image, str) else None for image in decoded]
    frame = pd.DataFrame({FILE_COLUMN: [f.name for f in batch], ERROR_COLUMN: errors}, dtype=object)
    if not good:
        return frame  # the probability columns are added empty (reindex)
    probabilities = predict_probabilities(
        classifier.model, np.stack([decoded[i] for i in good]), batch_size
    )
    probabilities = apply_temperature(probabilities, classifier.temperature)
    scored = probability_frame(probabilities, classifier.classes, classifier.threshold)
    scored.index = good
    return frame.join(scored)


def _log_progress(done: int, failed: int, start: float, when: str) -> None:
    elapsed = time.monotonic() - start
    logger.info(
        "Predicted %d images %s (%d unreadable) in %.1f s, %.0f images/s.",
        done,
        when,
        failed,
        elapsed,
        done / elapsed if elapsed else 0.0,
    )
