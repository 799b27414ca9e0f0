"""Nodes of the transfer_learning pipeline: build, feature extraction, fine-tuning; each phase
overrides ``training:`` with its own section of ``transfer:``."""

import logging
import math
from functools import partial
from typing import Any

import keras

from image_classifiers.core.models import transfer as transfer_models
from image_classifiers.core.params import AugmentationParams, TrainingParams, TransferParams
from image_classifiers.core.training import fit_model
from image_classifiers.pipelines.model_training.nodes import build_for_data
from image_classifiers.tracking import MlflowEpochMetrics

logger = logging.getLogger(__name__)

FEATURE_EXTRACTION, FINE_TUNING = "feature_extraction", "fine_tuning"


def build_transfer_model(
    train_set: dict[str, Any],
    transfer: TransferParams,
    augmentation: AugmentationParams | None,
    training: TrainingParams | None = None,
) -> keras.Model:
    """The frozen pretrained base (its weights fetched now) and a new head."""
    options = transfer.model_dump(exclude={FEATURE_EXTRACTION, FINE_TUNING})
    build = partial(transfer_models.build_transfer_model, **options)
    return build_for_data(build, train_set, augmentation, training)


def label_phase(history: dict[str, list[Any]], phase: str, first_epoch: int) -> dict[str, list]:
    """Add ``epoch`` (numbered on from ``first_epoch``) and ``phase`` to each epoch's entry."""
    epochs = len(history.get("loss", []))
    return {
        **history,
        "epoch": list(range(first_epoch, first_epoch + epochs)),
        "phase": [phase] * epochs,
    }


def merge_histories(*histories: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Concatenate per-epoch histories; a key missing from one is padded with NaN."""
    keys = dict.fromkeys(key for history in histories for key in history)
    return {
        key: [v for h in histories for v in h.get(key, [math.nan] * len(h.get("loss", [])))]
        for key in keys
    }


def train_feature_extractor(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
    transfer: TransferParams,
) -> tuple[keras.Model, dict[str, list[Any]]]:
    """Phase 1: train the new head on the frozen base."""
    options = transfer.phase_training(training, FEATURE_EXTRACTION)
    transfer_models.freeze_base(model)
    logger.info(
        "Feature extraction: %d epochs, base frozen, %s trainable parameters.",
        options.epochs,
        f"{_count_trainable(model):,}",
    )
    model, history = fit_model(
        model, train_set, validation_set, options, callbacks=[MlflowEpochMetrics()]
    )
    return model, label_phase(history, FEATURE_EXTRACTION, first_epoch=1)


def fine_tune_model(  # noqa: PLR0917 (Kedro passes node inputs positionally)
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
    transfer: TransferParams,
    feature_extraction_history: dict[str, list[Any]],
) -> tuple[keras.Model, dict[str, list[Any]]]:
    """Phase 2: unfreeze the base's top layers; phase 1's weights stay unless it does better."""
    options = transfer.phase_training(training, FINE_TUNING)
    feature_extraction_weights = model.get_weights()
    transfer_models.unfreeze_top_layers(model, transfer.fine_tuning.unfreeze_top_k)
    done = len(feature_extraction_history.get("loss", []))
    logger.info(
        "Fine-tuning: %d epochs from epoch %d, %s trainable parameters.",
        options.epochs,
        done + 1,
        f"{_count_trainable(model):,}",
    )
    model, history = fit_model(
        model, train_set, validation_set, options, done, callbacks=[MlflowEpochMetrics()]
    )
    before = _best(feature_extraction_history.get("val_loss", []))
    after = _best(history.get("val_loss", []))
    if history.get("loss") and after > before:
        model.set_weights(feature_extraction_weights)
        logger.warning(
            "Fine-tuning never beat the best feature-extraction val_loss (%.4f > %.4f): "
            "keeping the feature-extraction weights.",
            after,
            before,
        )
    return model, merge_histories(
        feature_extraction_history, label_phase(history, FINE_TUNING, first_epoch=done + 1)
    )


def _best(losses: list[float]) -> float:
    return min((value for value in losses if math.isfinite(value)), default=math.inf)


def _count_trainable(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)
