"""What xception_cats and compare_architectures leave in MLflow, against the record made
before the redesign (tests/golden/mlflow_smoke_runs.json, see tests/mlflow_record.py).

Every name must match, except the differences listed in INTENDED, each with its reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlflow_record import GOLDEN, record_smoke_runs

# Kedro-mlflow's MlflowMetricsHistoryDataset joins its prefix with a dot.
_FEATURE_EXTRACTION = [
    f"feature_extraction{sep}{name}"
    for sep in "_."
    for name in (
        "num_misclassified",
        "num_test_images",
        "test_accuracy",
        "test_f1",
        "test_loss",
        "test_precision",
        "test_recall",
        "test_roc_auc",
        "threshold",
    )
]
_NEW_TRAINING_KEYS = [
    "training.checkpoint_dir",
    "training.log_every_seconds",
    "training.class_weight",  # issue #20
]
# Issue #20: the split acts on the data checks (exclusions, duplicates and their thresholds).
_NEW_SPLIT_KEYS = [
    f"split.{key}"
    for key in (
        "exclude",
        "drop_duplicates",
        "hash_size",
        "duplicate_similarity",
        "duplicate_correlation",
    )
]
_COMPARED = ("mini_xception", "residual_convnet", "simple_convnet")
_BOOK_MODELS = ("alexnet", "googlenet", "lenet", "resnet", "vgg16")
#: (run or "registered_models", field, removed, added), with the reason beside each.
INTENDED: list[tuple[str, str, list[str], list[str]]] = [
    # The transfer model's name follows no parameter (issue #18, point 6): the base is the
    # run's "architecture" tag, not part of the registered name.
    ("registered_models", "", ["transfer_vgg16_keras"], ["transfer_keras"]),
    # Phase 1's metrics are logged by kedro-mlflow's MlflowMetricsHistoryDataset (prefix).
    (
        "xception_cats/xception_cats.transfer",
        "metrics",
        *(_FEATURE_EXTRACTION[:9], _FEATURE_EXTRACTION[9:]),
    ),
    # Training resumes after a crash and logs progress inside epochs: two new keys.
    *[
        (run, "params", [], _NEW_TRAINING_KEYS)
        for run in (
            "/xception_cats",
            "xception_cats/xception_cats.mini_xception",
            "xception_cats/xception_cats.transfer",
            "compare_architectures/compare_architectures.mini_xception",
            "compare_architectures/compare_architectures.residual_convnet",
        )
    ],
    ("/xception_cats", "params", [], _NEW_SPLIT_KEYS),
    # Issue #22: the extraction's limits against archive bombs are parameters.
    (
        "/xception_cats",
        "params",
        [],
        [
            f"extract.archive_limits.{key}"
            for key in ("max_depth", "max_member_mb", "max_members", "max_total_mb")
        ],
    ),
    # Zips inside an archive are always unpacked: the switch is gone.
    ("/xception_cats", "params", ["extract.nested_zips"], []),
    # compare_architectures is one namespace per model, in code like cnn_cifar10's variants
    # (no list parameter); the smoke env compares all three (simple_convnet builds at 32x32
    # there), each registered; the pipeline's run gets the options of the models it trains.
    ("registered_models", "", [], ["simple_convnet_keras"]),
    (
        "/compare_architectures",
        "params",
        [
            "compare_architectures",
            "compare_architectures.models",
            "compare_architectures.register_models",
            *[f"models.{name}.{key}" for name in _BOOK_MODELS for key in ("architecture",)],
            "models.alexnet.dense_units",
            "models.alexnet.dropout",
            "models.googlenet.aux_heads",
            "models.googlenet.aux_weight",
            "models.lenet.dense_units",
            "models.resnet.depth",
            "models.resnet.width",
            "models.vgg16.dense_units",
            "models.vgg16.dropout",
        ],
        [
            *[f"models.{name}" for name in _COMPARED],
            *[f"models.{name}.normalization" for name in _COMPARED],
            "models.simple_convnet.filters",
            *_NEW_TRAINING_KEYS,
        ],
    ),
]
# The evaluation report (issue #19): calibration metrics (the temperature among them) and
# parameters, the report's files.
_REPORT_METRICS = [
    "temperature",
    "test_brier",
    "test_brier_calibrated",
    "test_expected_calibration_error",
    "test_expected_calibration_error_calibrated",
]
_REPORT_PARAMS = ["evaluation.calibrate", "evaluation.calibration_bins", "evaluation.most_confused"]
_REPORT_FILES = ["model_card.md", "reliability.png", "top_losses.csv"]
INTENDED += [
    *[(run, "params", [], _REPORT_PARAMS) for run in ("/xception_cats", "/compare_architectures")],
    *[
        change
        for pipeline, model in (
            ("xception_cats", "mini_xception"),
            ("xception_cats", "transfer"),
            ("compare_architectures", "mini_xception"),
            ("compare_architectures", "residual_convnet"),
        )
        for change in (
            (f"{pipeline}/{pipeline}.{model}", "params", [], _REPORT_PARAMS),
            (f"{pipeline}/{pipeline}.{model}", "metrics", [], _REPORT_METRICS),
            (f"{pipeline}/{pipeline}.{model}", "artifacts", [], _REPORT_FILES),
        )
    ],
    # Phase 1 of transfer learning: its own calibration metrics and report files.
    (
        "xception_cats/xception_cats.transfer",
        "metrics",
        [],
        [f"feature_extraction.{name}" for name in _REPORT_METRICS],
    ),
    (
        "xception_cats/xception_cats.transfer",
        "artifacts",
        [],
        ["feature_extraction_reliability.png", "feature_extraction_top_losses.csv"],
    ),
]


#: The recipe options (issue #21), new keys in every run that logs their group (the key
#: that shows it): MixUp, CutMix and EMA in training, random erasing in augmentation.
RECIPE_KEYS = {
    "training.learning_rate": [
        f"training.{key}" for key in ("cutmix_alpha", "ema", "ema_momentum", "mixup_alpha")
    ],
    "augmentation.zoom": ["augmentation.erasing", "augmentation.erasing_area"],
}
#: New runs, and the run whose metrics, artifacts and status each must share.
NEW_RUNS = {
    "compare_architectures/compare_architectures.simple_convnet": (
        "compare_architectures/compare_architectures.residual_convnet"
    ),
}
# MLflow samples system metrics every 10 s: whether a short smoke run got a sample is timing.
TIMING = ("system_metrics",)


def _apply_intended(golden: dict[str, Any]) -> dict[str, Any]:
    """The golden record with the intended differences made."""
    expected = json.loads(json.dumps(golden))
    for where, field, removed, added in INTENDED:
        if where == "registered_models":
            entries = expected["registered_models"]
            versions = [entries.pop(name) for name in removed] or [1]
            entries.update(dict.fromkeys(added, versions[0]))
            continue
        entry = expected["runs"][where]
        assert set(removed) <= set(entry[field]), f"{where}: {removed} not in the golden record"
        entry[field] = sorted((set(entry[field]) - set(removed)) | set(added))
    for entry in expected["runs"].values():
        for shown_by, keys in RECIPE_KEYS.items():
            if shown_by in entry["params"]:
                entry["params"] = sorted({*entry["params"], *keys})
    return expected


def _without_timing(record: dict[str, Any]) -> dict[str, Any]:
    runs = {
        name: {k: v for k, v in run.items() if k not in TIMING}
        for name, run in record["runs"].items()
    }
    return {**record, "runs": runs}


@pytest.mark.slow
def test_the_smoke_runs_leave_what_they_left_before_the_redesign(tmp_path):
    record = _without_timing(record_smoke_runs(tmp_path))
    expected = _without_timing(_apply_intended(json.loads(GOLDEN.read_text())))
    assert record["registered_models"] == expected["registered_models"]
    assert sorted(record["runs"]) == sorted([*expected["runs"], *NEW_RUNS])
    for name, run in expected["runs"].items():
        assert record["runs"][name] == run, name
    for name, like in NEW_RUNS.items():
        for field in ("status", "metrics", "artifacts"):
            assert record["runs"][name][field] == expected["runs"][like][field], (name, field)
