"""Typed parameters: one pydantic model per group, validated by Kedro before any node runs.

A node argument annotated with a model (``training: TrainingParams``) gets its group validated
once, by Kedro: a misspelt key or a bad value stops ``kedro run`` with a message naming it.
The defaults live here only; ``python -m image_classifiers.core.params [group ...]`` prints
them. Lists set on the command line parse a string too (``96x128``, ``"cat dog"``, ``0-1000``),
because Kedro splits ``--params`` on commas.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import json
import re
import sys
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Self, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from image_classifiers.core.images import RESAMPLING_FILTERS

# Strict numbers: YAML and Kedro's --params parser already give ints, floats and bools, so
# anything else (true for a count, "0.1" for a rate) is a mistake, not something to coerce.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an int is accepted too
Bool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _split_words(value: Any) -> Any:
    # Kedro splits --params on commas, so a list is given as "cat dog" on the command line.
    return value.split() if isinstance(value, str) else value


def _parse_image_size(value: Any) -> Any:
    """``96`` or ``"96"`` (square), ``"96x128"`` ([height, width]) or a two-item list."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str):
        parts = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", value)
        if parts is None:
            raise ValueError(f"give [height, width], 96 (square) or 96x128, got {value!r}")
        height, width = parts.group(1), parts.group(2) or parts.group(1)
        return (int(height), int(width))
    return value


def _parse_range(value: Any) -> Any:
    """``"0-1000"`` (stop excluded) or ``[0, 1000]``."""
    if isinstance(value, str):
        parts = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
        if parts is None:
            raise ValueError(f"give [start, stop] or start-stop (0-1000), got {value!r}")
        return (int(parts.group(1)), int(parts.group(2)))
    if isinstance(value, int):
        # YAML reads 0:8 as a base-60 number: say which spelling works.
        raise ValueError(f"give [start, stop] or start-stop (0-1000), got the number {value}")
    return value


def _ordered_range(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] >= value[1]:
        raise ValueError(f"start must be below stop (stop is excluded), got {list(value)}")
    return value


def _distinct(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError(f"names must be distinct, got {list(value)}")
    return value


def _rate_or_auto(value: Any) -> Any:
    """One clear message for a rate that is neither a positive number nor ``auto``."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("rate", "Input should be a valid number or 'auto'")
    if not value > 0:
        raise PydanticCustomError("rate", "Input should be greater than 0")
    return value


#: A positive learning rate, or ``auto`` (an LR range test chooses it).
LearningRate = Annotated[float | Literal["auto"], BeforeValidator(_rate_or_auto)]
#: ``[height, width]`` of positive integers; on the command line ``96`` or ``96x128``.
ImageSize = Annotated[tuple[PositiveInt, PositiveInt], BeforeValidator(_parse_image_size)]
#: A list of names; on the command line ``"cat dog"`` (space-separated). A list, not a
#: tuple: kedro-mlflow logs ``params:split.classes`` as ``str(value)``, which must read as
#: the value ModelRunsHook logs for ``split``.
Names = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_split_words),
    AfterValidator(_distinct),
]
#: ``[start, stop)`` of non-negative integers; on the command line ``0-1000``.
IndexRange = Annotated[
    tuple[NonNegativeInt, NonNegativeInt],
    BeforeValidator(_parse_range),
    AfterValidator(_ordered_range),
]
Sha256 = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    Field(pattern=r"^[0-9a-f]{64}$"),
]


class Params(BaseModel):
    """Base of every parameter group: unknown keys are errors, values are validated."""

    # hide_input_in_errors: the message names the key and the rule; the whole group's
    # dict repeated in every error line would only bury it.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Reject unknown keys with the allowed ones (pydantic alone says only 'extra')."""
        if cls.model_config.get("extra") != "forbid" or not isinstance(data, Mapping):
            return data
        allowed = list(cls.model_fields)
        unknown = [str(key) for key in data if key not in cls.model_fields]
        if unknown:
            hints = [
                f"'{key}' (did you mean '{close[0]}'?)"
                if (close := difflib.get_close_matches(key, allowed, n=1))
                else f"'{key}'"
                for key in unknown
            ]
            raise ValueError(f"unknown key {', '.join(hints)}; allowed keys: {', '.join(allowed)}")
        return data

    def merged(self, overrides: Params | Mapping[str, Any] | None) -> Self:
        """A copy with the keys set in ``overrides`` (a partial model or dict) replaced."""
        if isinstance(overrides, BaseModel):
            changes = overrides.model_dump(exclude_unset=True)
        else:
            changes = dict(overrides or {})
        return type(self).model_validate({**self.model_dump(), **changes})


class Overrides(Params):
    """Base of the override groups made by :func:`overrides_of`."""

    #: The keys that override another group's: left out of a dump while not given.
    overridden: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A key that was not given must stay not given when the group travels as a dict
        # (the logged parameters, read back): as None it would override.
        return {
            key: value
            for key, value in handler(self).items()
            if key not in self.overridden or key in self.model_fields_set
        }


def overrides_of(model: type[Params], **extra: Any) -> type[Overrides]:
    """A model taking any subset of ``model``'s keys (plus ``extra``), each with its rules; a
    key not given stays unset, so ``Params.merged`` applies only what was given."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        # The constraints (Field(ge=...), validators) sit in metadata: keep them.
        annotation = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        fields[name] = (annotation, FieldInfo(default=None, description=info.description))
    overridden = frozenset(fields)
    fields.update(extra)
    overrides = create_model(f"{model.__name__}Overrides", __base__=Overrides, **fields)
    overrides.overridden = overridden
    return overrides


# ---- data_processing ----------------------------------------------------------------------


#: The Keras datasets the ``keras_datasets`` source reads (core/data/keras_datasets.py).
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


class SourceParams(Params):
    """``source``: which layout the data pipeline reads."""

    type: Literal["kaggle_names", "class_folders", "keras_datasets"] = Field(
        "kaggle_names",
        description="kaggle_names (<class>.<N>.jpg) | class_folders | keras_datasets",
    )
    name: str | None = Field(None, description="keras_datasets: its name, e.g. mnist")

    @model_validator(mode="after")
    def _dataset_named(self) -> Self:
        if self.type == "keras_datasets" and self.name not in KERAS_DATASETS:
            raise ValueError(
                f"source.type keras_datasets needs name: one of {', '.join(KERAS_DATASETS)}; "
                f"got {self.name!r}"
            )
        return self


class DownloadParams(Params):
    """``download``: where the raw archive comes from (local_path > url > gdrive_id)."""

    gdrive_id: str | None = Field("18uC7WTuEXKJDDxbj-Jq6EjzpFrgE7IAd", description="852 MB")
    url: str | None = Field(None, description="any http(s) URL; wins over gdrive_id")
    local_path: str | None = Field(None, description="an archive on disk, used in place")
    sha256: Sha256 | None = Field(None, description="64 hex digits, as sha256sum prints")
    archive_path: str = Field("data/01_raw/dogs-vs-cats.zip", description="download to")
    retries: NonNegativeInt = Field(3, description="extra attempts after a network error")
    timeout: Float = Field(60, gt=0, description="seconds without data before giving up")
    resume: Bool = Field(True, description="continue an interrupted download's partial file")


#: File suffixes read as images, by the data pipeline and by predict (PIL reads them all).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ArchiveLimits(Params):
    """``archive_limits``: how much a zip may unpack to (zip bombs); a member over a limit is
    not read (predict: its row says why; extract: an error, or a skipped row for one member)."""

    max_member_mb: PositiveInt = Field(1024, description="uncompressed, one member (zips too)")
    max_total_mb: PositiveInt = Field(16384, description="uncompressed, all members (zips too)")
    max_members: PositiveInt = Field(1_000_000, description="images and zips, nested too")
    max_depth: NonNegativeInt = Field(3, description="zips inside zips")


class ExtractParams(Params):
    """``extract``: which member of the archive holds the images, and where they go."""

    inner_archive: str | None = Field("train.zip", description="null = the archive itself")
    extensions: Names = Field(list(IMAGE_EXTENSIONS), min_length=1)
    target_dir: str = "data/01_raw/dogs-vs-cats"
    archive_limits: ArchiveLimits = ArchiveLimits()


def _no_overlap(ranges: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    if not ranges:
        raise ValueError("give at least one subset, e.g. {train: [0, 1000]}")
    items = sorted(ranges.items(), key=lambda item: item[1])
    for (a, (a0, a1)), (b, (b0, b1)) in itertools.pairwise(items):
        if b0 < a1:
            raise ValueError(
                f"{a} [{a0}, {a1}) and {b} [{b0}, {b1}) share {min(a1, b1) - b0} indices "
                f"({b0}–{min(a1, b1) - 1}), whose files would be in two subsets; make the "
                "ranges disjoint"
            )
    return ranges


def _folder_names(names: list[str]) -> list[str]:
    bad = [n for n in names if "/" in n or "\\" in n or n.startswith(".")]
    if len(names) < 2 or bad:
        raise ValueError(
            "give at least two file-name prefixes usable as folder names (e.g. [cat, dog] "
            f"for cat.0.jpg, dog.0.jpg), got {list(names)}"
        )
    return names


class SplitParams(Params):
    """``split``: which images go to which subset: index ranges, or fractions per class."""

    classes: Annotated[Names, AfterValidator(_folder_names)] | None = Field(
        None,
        description="kaggle_names: the file-name prefixes (cat.0.jpg -> cat), set from "
        "globals.classes; class_folders/keras_datasets: null = the source's own names",
    )
    target_dir: str = "data/02_intermediate/cats_vs_dogs_small"
    ranges: Annotated[dict[str, IndexRange], AfterValidator(_no_overlap)] | None = Field(
        default_factory=lambda: {
            "train": (0, 1000),
            "validation": (1000, 1500),
            "test": (1500, 2500),
        },
        description="subset -> [start, stop) of N (per class, disjoint); or null",
    )
    fractions: dict[str, Annotated[float, Strict(), Field(gt=0, le=1)]] | None = None
    seed: NonNegativeInt = Field(0, description="the shuffle of a fraction split")
    exclude: Annotated[list[str], BeforeValidator(_split_words)] = Field(
        default_factory=list, description="files left out (as in split_manifest.csv, or cat.12.jpg)"
    )
    drop_duplicates: Bool = Field(False, description="drop exact and cross-subset copies")
    hash_size: Annotated[int, Strict(), Field(ge=4, le=32, multiple_of=4)] = Field(
        8, description="near duplicates: difference hash of hash_size² bits (4, 8 ... 32)"
    )
    duplicate_similarity: Annotated[float, Strict(), Field(ge=0.5, le=1)] = Field(
        0.8, description="near duplicates share at least this fraction of hash bits"
    )
    duplicate_correlation: Annotated[float, Strict(), Field(ge=0, le=1)] = Field(
        0.9, description="and their grey thumbnails correlate at least this much"
    )

    @model_validator(mode="before")
    @classmethod
    def _fractions_replace_ranges(cls, data: Any) -> Any:
        # Giving fractions (and no ranges) means a fraction split: the default ranges go.
        given = isinstance(data, Mapping) and data.get("fractions") is not None
        return {**data, "ranges": None} if given and "ranges" not in data else data

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Self:
        if (self.ranges is None) == (self.fractions is None):
            raise ValueError(
                "set exactly one of ranges and fractions (clear the other with "
                '--params="split.ranges=null" or split.fractions=null)'
            )
        # Checked here, before any node runs: not after a long download and extraction.
        if self.fractions and abs((total := sum(self.fractions.values())) - 1) > 1e-6:
            given = ", ".join(f"{subset} {value:g}" for subset, value in self.fractions.items())
            raise ValueError(
                f"fractions add up to {total:g}, not 1 ({given}); make them add up to 1 "
                "(to use less data, split by ranges instead)"
            )
        return self


Resample = Literal[tuple(RESAMPLING_FILTERS)]  # type: ignore[valid-type]


class DecodeParams(Params):
    """``decode``: the size and filter every image is decoded to, once."""

    image_size: ImageSize = Field(description="[height, width]; set from globals.image_size")
    on_bad_image: Literal["skip", "fail"] = Field("skip", description="skip: data_quality.json")
    resample: Annotated[Resample, BeforeValidator(_lower)] = "bilinear"
    workers: PositiveInt | None = Field(None, description="decoding threads; null = one per core")
    log_every: PositiveInt = Field(500, description="images between progress lines")
    chunk_size: PositiveInt = Field(512, description="images decoded at once (RAM)")
    scratch_dir: str = Field("data/05_model_input", description="where a split is staged")


class DataChecksParams(Params):
    """``data_checks``: the label model of ``core.data.checks`` (hashes: ``split``)."""

    folds: Annotated[int, Strict(), Field(ge=2)] = Field(5, description="out-of-fold k")
    feature_size: PositiveInt = Field(16, description="images shrunk to this square")
    components: PositiveInt = Field(64, description="PCA components, then logistic regression")
    regularization: Float = Field(1.0, gt=0, description="the logistic regression's C")
    max_iter: PositiveInt = Field(1000, description="the logistic regression's iterations")
    suspects_grid: NonNegativeInt = Field(25, description="top suspects drawn")
    seed: NonNegativeInt = 0


# ---- model_training -----------------------------------------------------------------------


class TrainingParams(Params):
    """``training``: optimizer, schedule and loop of ``core.training.fit_model``."""

    optimizer: Annotated[Literal["rmsprop", "adam", "adamw"], BeforeValidator(_lower)] = "rmsprop"
    learning_rate: LearningRate = Field(
        1e-3, description="auto: an LR range test (lr_find's defaults) picks it first"
    )
    weight_decay: Float | None = Field(None, ge=0, description="null: adamw's 0.004")
    schedule: Literal["cosine"] | None = Field(None, description="null = constant")
    warmup_epochs: NonNegativeInt = Field(0, description="cosine: linear warm-up first")
    epochs: NonNegativeInt = Field(100, description="0 = build and save the model untrained")
    batch_size: PositiveInt = 32
    early_stopping_patience: PositiveInt | None = Field(None, description="null = off")
    label_smoothing: Float = Field(0.0, ge=0, lt=1, description="towards uniform targets")
    mixup_alpha: Float = Field(0.0, ge=0, description="MixUp's Beta(a, a); 0 = off")
    cutmix_alpha: Float = Field(0.0, ge=0, description="CutMix's Beta(a, a); 0 = off")
    ema: Bool = Field(False, description="validate and keep a moving average of the weights")
    ema_momentum: Float = Field(0.99, gt=0, lt=1, description="ema: the average's momentum")
    mixed_precision: Bool = Field(False, description="mixed_bfloat16, set at build time")
    steps_per_execution: PositiveInt = 1
    seed: NonNegativeInt | None = Field(None, description="kedro runs: globals.seed")
    checkpoint_dir: str | None = Field(None, description="killed runs resume; null: never")
    log_every_seconds: Float = Field(60, gt=0, description="progress lines inside an epoch")
    class_weight: Literal["balanced"] | dict[str, Annotated[float, Field(gt=0)]] | None = Field(
        None, description="balanced (n / (classes × count)) | {class: weight} | null"
    )
    distribution: Literal["auto", "none", "data_parallel"] = Field(
        "auto",
        description="auto: every local device on JAX when there are several | none | "
        "data_parallel (JAX: keras.distribution.DataParallel, or an error)",
    )

    @model_validator(mode="after")
    def _warmup_fits(self) -> Self:
        if self.warmup_epochs and self.schedule != "cosine":
            raise ValueError(
                "warmup_epochs ramps the learning rate up before the cosine decay: set "
                "schedule to cosine, or warmup_epochs to 0"
            )
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})"
            )
        return self


class AugmentationParams(Params):
    """``augmentation``: training-only random transforms (``layers.RandomAugment``)."""

    horizontal_flip: Bool = True
    rotation: Fraction = Field(0.1, description="fraction of a full turn")
    zoom: Fraction = 0.2
    translation: Fraction = Field(0.0, description="fraction of height/width")
    contrast: Fraction = 0.0
    brightness: Fraction = 0.0
    erasing: Fraction = Field(0.0, description="random erasing: share of images given a box")
    erasing_area: Annotated[float, Strict(), Field(gt=0.02, le=1)] = Field(
        0.33, description="random erasing: largest box, a fraction of the image (from 0.02)"
    )


class EvaluationParams(Params):
    """``evaluation``: scoring a trained model on the test split."""

    threshold: Float = Field(0.5, ge=0, le=1, description="two classes: P(second) above it")
    misclassified_grid: NonNegativeInt = Field(16, description="misclassified images plotted")
    batch_size: PositiveInt = Field(32, description="images per inference step")
    test_time_flip: Bool = Field(False, description="average with the mirror image")
    calibrate: Bool = Field(True, description="fit a temperature on the validation split")
    calibration_bins: PositiveInt = Field(15, description="confidence bins of ECE, diagram")
    most_confused: NonNegativeInt = Field(10, description="class pairs listed")


class InspectionParams(Params):
    """``inspection``: looking inside each trained model (feature maps and Grad-CAM)."""

    feature_map_layers: NonNegativeInt = Field(4, description="first convolutions drawn")
    feature_map_channels: NonNegativeInt = Field(8, description="channels drawn per convolution")
    feature_map_image: NonNegativeInt = Field(0, description="test image index")
    grad_cam_grid: NonNegativeInt = Field(16, description="images, misclassified first")
    batch_size: PositiveInt = Field(16, description="images per forward/backward pass")


@cache
def _builder_options_model(architecture: str) -> type[Params]:
    """A model of the keyword options ``architecture``'s builder takes (types, defaults)."""
    from image_classifiers.core.models import ARCHITECTURES

    builder: Callable[..., Any] = ARCHITECTURES[architecture]
    hints = get_type_hints(builder)
    parameters = list(inspect.signature(builder).parameters.values())[2:]  # shape, classes
    fields = {p.name: (hints.get(p.name, Any), p.default) for p in parameters}
    return create_model(f"{architecture}_options", __base__=Params, **fields)


def _architecture_names() -> tuple[str, ...]:
    from image_classifiers.core.models import ARCHITECTURES

    return tuple(sorted(ARCHITECTURES))


class ModelOptions(Params):
    """``models.<name>``: ``architecture`` plus that builder's own options, checked against
    the builder's signature (names and types) so that a misspelt option fails before any node."""

    model_config = ConfigDict(extra="allow")

    architecture: str
    normalization: Literal["rescale", "standardize"] = Field("rescale", description="to [0, 1]")

    @model_validator(mode="after")
    def _builder_options(self) -> Self:
        names = _architecture_names()
        if self.architecture not in names:
            raise ValueError(
                f"unknown architecture '{self.architecture}'; choose one of: {', '.join(names)}"
            )
        _builder_options_model(self.architecture).model_validate(self.model_extra or {})
        return self

    @property
    def options(self) -> dict[str, Any]:
        """``build_classifier``'s keyword options: ``normalization`` and the builder's."""
        return {"normalization": self.normalization, **(self.model_extra or {})}


class LrFindParams(Params):
    """``lr_find``: the LR range test (``core.lr_range``) and the pipeline it runs on."""

    target: str = Field("model_training", min_length=1, description="a training pipeline")
    min_learning_rate: Float = Field(1e-7, gt=0, description="the sweep's first rate")
    max_learning_rate: Float = Field(10.0, gt=0, description="the sweep's last rate")
    steps: Annotated[int, Strict(), Field(ge=10)] = Field(200, description="batches swept")
    smoothing: Annotated[float, Strict(), Field(ge=0, lt=1)] = Field(
        0.9, description="of the loss' moving average (0.9: over about 10 batches)"
    )
    divergence: Annotated[float, Strict(), Field(gt=1)] = Field(
        4.0, description="stop once the smoothed loss exceeds this times its minimum"
    )
    method: Literal["steepest", "minimum"] = Field(
        "steepest",
        description="steepest descent of the smoothed loss | minimum: its minimum's rate / 10",
    )

    @model_validator(mode="after")
    def _rising(self) -> Self:
        if self.min_learning_rate >= self.max_learning_rate:
            raise ValueError(
                f"min_learning_rate ({self.min_learning_rate:g}) must be below "
                f"max_learning_rate ({self.max_learning_rate:g})"
            )
        return self


# ---- transfer_learning --------------------------------------------------------------------

#: Training keys a transfer phase may override (each keeps its type and constraints).
TrainingOverrides = overrides_of(TrainingParams)


def _on_top_of(**defaults: Any) -> BeforeValidator:
    """A nested group's given keys go on top of these defaults (rather than replace them)."""
    return BeforeValidator(lambda v: {**defaults, **v} if isinstance(v, Mapping) else v)


class FineTuningParams(overrides_of(TrainingParams)):  # type: ignore[misc]
    """``transfer.fine_tuning``: training overrides plus how much of the base to unfreeze."""

    unfreeze_top_k: NonNegativeInt = Field(4, description="top layers of the base unfrozen")


# Nested groups validated from {} so that their defaults apply even when left out.
_NESTED = {"default_factory": dict, "validate_default": True}


def _base_names() -> tuple[str, ...]:
    from image_classifiers.core.models.transfer import BASES

    return tuple(BASES)


class TransferParams(Params):
    """``transfer``: the pretrained base, the new head, and the two training phases."""

    base: str = Field(description="the pretrained network; conf/base sets vgg16")
    weights: str | None = Field("imagenet", description="or a no-top .h5 file, or null")
    pooling: Literal["flatten", "avg", "max"] = "flatten"
    dense_units: PositiveInt | None = Field(256, description="ReLU units before the dropout")
    batch_norm: Bool = Field(False, description="between the dense layer and its ReLU")
    dropout: Annotated[float, Strict(), Field(ge=0, lt=1)] = Field(
        0.5, description="0 leaves the Dropout layer out"
    )
    feature_extraction: Annotated[
        TrainingOverrides,  # type: ignore[valid-type]
        _on_top_of(epochs=50, learning_rate=1e-3),
    ] = Field(**_NESTED)
    fine_tuning: Annotated[FineTuningParams, _on_top_of(epochs=30, learning_rate=1e-5)] = Field(
        **_NESTED
    )

    @model_validator(mode="after")
    def _known_base(self) -> Self:
        if self.base not in (names := _base_names()):
            raise ValueError(f"unknown base '{self.base}'; choose one of: {', '.join(names)}")
        return self

    def phase_training(self, training: TrainingParams, phase: str) -> TrainingParams:
        """``training`` with the keys given under ``transfer.<phase>`` replaced."""
        overrides = getattr(self, phase).model_dump(exclude_unset=True)
        overrides.pop("unfreeze_top_k", None)
        return training.merged(overrides)


# ---- predict, retrain, compare_architectures ---------------------------------------------


class PredictParams(Params):
    """``predict``: which model classifies which images."""

    source: str = Field("data/01_raw/predict", min_length=1, description="folder or .zip")
    model: str | None = Field(
        None,
        description="models:/<name>@<alias>, models:/<name>/<v>, runs:/<id>/model or a .keras "
        "file; conf/base: the champion of registered_model_name",
    )
    classes: Names | None = Field(None, description="only for a model that lacks them")
    threshold: Float | None = Field(None, ge=0, le=1, description="null = the model's own")
    image_size: ImageSize | None = Field(None, description="only for any-size models")
    batch_size: PositiveInt = Field(64, description="images decoded and classified at a time")
    decode_workers: PositiveInt | None = Field(None, description="null = one per CPU core")
    archive_limits: ArchiveLimits = ArchiveLimits()


class RetrainParams(Params):
    """``retrain``: new images, the challenger, promotion rules, the Model Registry names."""

    incoming_dir: str = "data/01_raw/incoming"
    archive: str | None = Field(None, description="a .zip of <class>/ folders instead")
    processed_dir: str = "data/01_raw/incoming_processed"
    archive_limits: ArchiveLimits = ArchiveLimits()
    on_bad_image: Literal["skip", "fail"] = "skip"
    force: Bool = Field(False, description="train a challenger even without new images")
    model: str = Field("mini_xception", min_length=1, description="a key of models")
    training: Annotated[TrainingOverrides, _on_top_of(epochs=30)] = Field(**_NESTED)  # type: ignore[valid-type]
    metric: str = Field("test_accuracy", min_length=1, description="a key of metrics.json")
    greater_is_better: Bool = True
    min_improvement: Float = Field(0.005, ge=0)
    min_score: Float = 0.6
    registered_model_name: str = Field("cats_vs_dogs", min_length=1)
    champion_alias: str = Field("champion", min_length=1)
    challenger_alias: str = Field("challenger", min_length=1)
    serve_onnx: Bool = Field(True, description="register the verified ONNX export if any")
    require_export: Bool = Field(False, description="promote only with a verified ONNX export")
    max_calibration_error: Float | None = Field(
        None, ge=0, le=1, description="promote only if the served test ECE is at most this"
    )

    def model_options(self, models: Mapping[str, Any] | None) -> ModelOptions:
        """``models[retrain.model]`` validated, or a ``ValueError`` listing the models. Kedro
        validates each group alone: ``ParamsCrossCheckHook`` calls this before any node."""
        models = models or {}
        if self.model not in models:
            raise ValueError(
                f"retrain.model is '{self.model}' but models has no such entry; choose one "
                f"of {sorted(models)} (parameters_model_training.yml)."
            )
        try:
            return ModelOptions.model_validate(models[self.model])
        except ValueError as exc:  # pydantic's ValidationError is one
            raise ValueError(f"models.{self.model} (retrain.model): {exc}") from exc


ExportFormat = Literal[
    "saved_model", "onnx", "onnx_int8", "litert", "litert_float16", "litert_int8"
]


class ExportParams(Params):
    """``export``: the formats a model is exported to and how each file is verified."""

    model: str = Field(
        "data/06_models/mini_xception.keras",
        min_length=1,
        description="a .keras file or a registry URI (models:/<name>@<alias>)",
    )
    formats: Annotated[list[ExportFormat], BeforeValidator(_split_words)] = Field(
        ["saved_model", "onnx", "onnx_int8", "litert", "litert_float16", "litert_int8"],
        min_length=1,
    )
    output_dir: str = Field("data/06_models/exported", description="<output_dir>/<model>/")
    max_accuracy_drop: Fraction = Field(0.02, description="refuse a file this far below Keras")
    representative_size: NonNegativeInt = Field(
        100, description="training images calibrating int8 (0: no int8 export)"
    )
    latency_runs: PositiveInt = Field(50, description="batch-1 calls timed per format")
    batch_size: PositiveInt = Field(32, description="images per call when scoring")


# ---- tune --------------------------------------------------------------------------------

#: The target's groups a search may vary: ``tune.space.<group>.<key>``.
TUNABLE = {"training": TrainingParams, "augmentation": AugmentationParams, "model_options": None}
Choice = Bool | Int | Float | str | None  # what Optuna's suggest_categorical takes


class SearchDimension(Params):
    """One searched parameter: ``low`` and ``high`` (``log``, ``step``), or ``choices``."""

    low: Int | Float | None = None
    high: Int | Float | None = None
    log: Bool = Field(False, description="sample on a log scale (low > 0)")
    step: Int | Float | None = Field(None, description="a grid from low; ints: 1")
    choices: Annotated[list[Choice], AfterValidator(_distinct)] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.choices is None) == (self.low is None and self.high is None):
            raise ValueError("give either low and high, or choices (not both)")
        if self.choices is None and (
            self.low is None or self.high is None or self.low >= self.high
        ):
            raise ValueError(f"low must be below high, got low {self.low}, high {self.high}")
        if self.log and (self.step is not None or self.low is None or self.low <= 0):
            raise ValueError("log needs low > 0 and no step")
        return self

    @property
    def integer(self) -> bool:
        """Whether the range is of integers (``suggest_int``)."""
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))


class TuneParams(Params):
    """``tune``: an Optuna study over a training pipeline's parameters (``--pipelines=tune``)."""

    target: str = Field("model_training", description="the training pipeline searched")
    n_trials: PositiveInt = Field(20, description="trials this run adds, all workers together")
    n_workers: PositiveInt = Field(1, description="worker processes on this machine")
    study_name: str | None = Field(None, min_length=1, description="null: the target; resumes")
    storage: str = Field("sqlite:///data/06_models/optuna.db", description="or postgresql://")
    metric: Literal["val_loss", "val_accuracy"] = Field("val_loss", description="its best epoch")
    epochs: PositiveInt | None = Field(None, description="per trial; null: the target's")
    pruner: Literal["median", "none"] = Field("median", description="from the metric per epoch")
    pruner_startup_trials: NonNegativeInt = Field(5, description="completed before pruning")
    pruner_warmup_epochs: NonNegativeInt = Field(1, description="epochs never pruned")
    seed: NonNegativeInt | None = Field(None, description="the sampler's; kedro: globals.seed")
    space: dict[
        Literal["training", "augmentation", "model_options"], dict[str, SearchDimension]
    ] = Field(description="<group>: {<key>: {low, high, log} or {choices}}")

    @model_validator(mode="after")
    def _searchable(self) -> Self:
        if not any(self.space.values()):
            raise ValueError("the search space is empty: give tune.space.<group>.<key> ranges")
        if self.n_workers > self.n_trials:
            raise ValueError(
                f"n_workers ({self.n_workers}) is more than n_trials ({self.n_trials}): "
                "a worker would have no trial; lower n_workers or raise n_trials"
            )
        for group, keys in self.space.items():
            model = TUNABLE[group]  # model_options: checked against the target's builder
            for key in keys if model else ():
                if key not in model.model_fields:
                    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ValueError(f"space.{group}: {group} has no key '{key}'{hint}")
        return self

    @property
    def direction(self) -> str:
        """Optuna's direction for ``metric``."""
        return "minimize" if self.metric.endswith("loss") else "maximize"


#: The groups a user sets, by their key in conf/ (as ``python -m`` lists them).
GROUPS: dict[str, type[Params]] = {
    "source": SourceParams,
    "download": DownloadParams,
    "extract": ExtractParams,
    "split": SplitParams,
    "decode": DecodeParams,
    "data_checks": DataChecksParams,
    "training": TrainingParams,
    "augmentation": AugmentationParams,
    "evaluation": EvaluationParams,
    "inspection": InspectionParams,
    "lr_find": LrFindParams,
    "transfer": TransferParams,
    "predict": PredictParams,
    "retrain": RetrainParams,
    "export": ExportParams,
    "tune": TuneParams,
}


def describe(group: type[BaseModel], indent: str = "  ") -> list[str]:
    """Each key of ``group`` with its default and what it means, as YAML lines."""
    lines = []
    overridden = group.overridden if issubclass(group, Overrides) else frozenset()
    for name, field in group.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if name in overridden:
            continue
        if nested is not None and issubclass(nested, Overrides):
            lines.append(f"{indent}{name}:  # any training key, overriding training here")
            lines += describe(nested, indent + "  ")
        elif nested is not None and issubclass(nested, BaseModel):
            lines += [f"{indent}{name}:", *describe(nested, indent + "  ")]
        else:
            default = (
                "(required)"
                if field.is_required()
                else field.get_default(call_default_factory=True)
            )
            note = f"  # {field.description}" if field.description else ""
            lines.append(f"{indent}{name}: {json.dumps(default, default=str)}{note}")
    return lines


if __name__ == "__main__":
    # python -m image_classifiers.core.params [group ...]: the defaults, read from the models.
    for key in sys.argv[1:] or GROUPS:
        sys.stdout.write("\n".join([f"{key}:", *describe(GROUPS[key])]) + "\n")
