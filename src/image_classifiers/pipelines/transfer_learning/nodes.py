"""Nodes of the transfer_learning pipeline: build, feature extraction, fine-tuning, plots.

Training goes through ``image_classifiers.training.fit_model`` like every other model; each
phase runs with the shared ``training:`` parameters overridden by its own section of
``transfer:`` (``transfer.feature_extraction``, ``transfer.fine_tuning``). The evaluation is
the ``model_training`` pipeline's ``evaluate_model``, so the metrics compare one to one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
from matplotlib.figure import Figure

from image_classifiers.models import transfer as transfer_models
from image_classifiers.params import AugmentationParams, TrainingParams, TransferParams
from image_classifiers.pipelines.model_training.nodes import plot_training_curves
from image_classifiers.training import check_image_set, fit_model, model_build_scope

logger = logging.getLogger(__name__)

FEATURE_EXTRACTION = "feature_extraction"
FINE_TUNING = "fine_tuning"
# Keys of ``transfer:`` that configure the model (the rest are the two phases).
MODEL_KEYS = ("base", "weights", "pooling", "dense_units", "batch_norm", "dropout")


def phase_training(
    training: TrainingParams | dict[str, Any] | None,
    transfer: TransferParams | dict[str, Any],
    phase: str,
) -> TrainingParams:
    """The ``training`` parameters for one phase: the shared ones, overridden by the phase's.

    Args:
        training: The shared ``training:`` parameters.
        transfer: The ``transfer:`` parameters (``TransferParams`` rejects a phase key that
            is no training parameter, so a typo is an error, not ignored).
        phase: ``"feature_extraction"`` or ``"fine_tuning"``.

    Returns:
        The phase's training parameters for ``fit_model``.
    """
    return TransferParams.coerce(transfer).phase_training(TrainingParams.coerce(training), phase)


def build_transfer_model(
    train_set: dict[str, Any],
    transfer: TransferParams,
    augmentation: AugmentationParams | None,
    training: TrainingParams | None = None,
    *run_after: Any,
) -> keras.Model:
    """Build the pretrained base + new head for the training data's shape and classes.

    Args:
        train_set: Decoded training split; gives the input shape and the classes.
        transfer: ``transfer:`` parameters (``base``, ``weights``, ``pooling``,
            ``dense_units``, ``batch_norm``, ``dropout``; the phase sections are read later).
        augmentation: ``augmentation:`` parameters, applied in training only, before the
            base's preprocessing.
        training: ``training:`` parameters; the seed and mixed precision act at build time.
        *run_after: Ignored. Outputs of nodes that must finish first: ``xception_cats``
            passes the from-scratch model's metrics so that the transfer stage starts only
            once that model is trained, evaluated and saved.

    Returns:
        An uncompiled model taking raw uint8 images, base frozen.
    """
    transfer = TransferParams.coerce(transfer)
    augmentation = None if augmentation is None else AugmentationParams.coerce(augmentation)
    check_image_set("train_set", train_set)
    input_shape = tuple(train_set["images"].shape[1:])
    num_classes = len(train_set["classes"])
    with model_build_scope(training):
        model = transfer_models.build_transfer_model(
            input_shape,
            num_classes,
            augmentation=augmentation and augmentation.model_dump(),
            **transfer.model_dump(include=set(MODEL_KEYS)),
        )
    base = transfer_models.pretrained_base(model)
    logger.info(
        "Built %s for %s images, %d classes: %s parameters (base %s: %s, frozen).",
        model.name,
        "x".join(map(str, input_shape)),
        num_classes,
        f"{model.count_params():,}",
        base.name,
        f"{base.count_params():,}",
    )
    return model


def label_phase(
    history: dict[str, list[Any]], phase: str, first_epoch: int
) -> dict[str, list[Any]]:
    """Add ``epoch`` (numbered on from ``first_epoch``) and ``phase`` to each epoch's entry."""
    epochs = len(history.get("loss", []))
    return {
        **history,
        "epoch": list(range(first_epoch, first_epoch + epochs)),
        "phase": [phase] * epochs,
    }


def merge_histories(*histories: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Concatenate per-epoch histories; a key missing from one is padded with NaN."""
    keys = list(dict.fromkeys(key for history in histories for key in history))
    merged: dict[str, list[Any]] = {key: [] for key in keys}
    for history in histories:
        epochs = len(history.get("loss", []))
        for key in keys:
            merged[key].extend(history.get(key, [math.nan] * epochs))
    return merged


def train_feature_extractor(
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
    transfer: TransferParams,
) -> tuple[keras.Model, dict[str, list[Any]]]:
    """Phase 1, feature extraction: train the new head on top of the frozen base.

    Returns:
        The model with the weights of its best ``val_loss`` epoch, and the phase's history
        (``fit_model``'s keys plus ``epoch``, from 1, and ``phase``).
    """
    options = phase_training(training, transfer, FEATURE_EXTRACTION)
    transfer_models.freeze_base(model)
    logger.info(
        "Feature extraction: %d epochs, base frozen, %s trainable parameters.",
        options.epochs,
        f"{_count_trainable(model):,}",
    )
    model, history = fit_model(model, train_set, validation_set, options)
    return model, label_phase(history, FEATURE_EXTRACTION, first_epoch=1)


def fine_tune_model(  # noqa: PLR0917 (Kedro passes node inputs positionally)
    model: keras.Model,
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    training: TrainingParams,
    transfer: TransferParams,
    feature_extraction_history: dict[str, list[Any]],
) -> tuple[keras.Model, dict[str, list[Any]]]:
    """Phase 2, fine-tuning: unfreeze the base's top layers and train on with a low rate.

    BatchNormalization layers stay frozen. If no fine-tuning epoch beats the best
    validation loss of feature extraction, the feature-extraction weights are kept: the
    result is the best checkpoint of both phases.

    Args:
        model: The feature-extraction model (best weights of phase 1).
        train_set: Decoded training split.
        validation_set: Decoded validation split.
        training: The shared ``training:`` parameters.
        transfer: ``transfer:`` parameters; ``fine_tuning.unfreeze_top_k`` and overrides.
        feature_extraction_history: Phase 1's history (its length sets the epoch numbers).

    Returns:
        The final model and the history of both phases, epochs numbered on across them.

    Raises:
        ValueError: If ``transfer.fine_tuning.unfreeze_top_k`` is out of range.
    """
    transfer = TransferParams.coerce(transfer)
    options = phase_training(training, transfer, FINE_TUNING)
    top_k = transfer.fine_tuning.unfreeze_top_k
    feature_extraction_weights = model.get_weights()
    transfer_models.unfreeze_top_layers(model, top_k)
    done = len(feature_extraction_history.get("loss", []))
    logger.info(
        "Fine-tuning: %d epochs from epoch %d, %s trainable parameters.",
        options.epochs,
        done + 1,
        f"{_count_trainable(model):,}",
    )
    model, history = fit_model(model, train_set, validation_set, options, initial_epoch=done)
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
    finite = [value for value in losses if math.isfinite(value)]
    return min(finite, default=math.inf)


def _count_trainable(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)


def plot_transfer_curves(history: dict[str, list[Any]]) -> Figure:
    """``plot_training_curves`` of both phases, with a line where fine-tuning starts."""
    figure = plot_training_curves(history)
    phases = history.get("phase", [])
    if FINE_TUNING in phases and phases.index(FINE_TUNING) > 0:
        boundary = phases.index(FINE_TUNING) + 0.5
        for axes in figure.axes:
            axes.axvline(boundary, color="tab:red", linestyle=":", label="Fine-tuning starts")
            axes.legend()
    return figure
