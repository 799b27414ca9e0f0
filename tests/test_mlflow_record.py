"""What xception_cats and compare_architectures leave in MLflow, against the record made
before the redesign (tests/golden/mlflow_smoke_runs.json, see tests/mlflow_record.py).

Every name must match, except the differences listed in INTENDED, each with its reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlflow_record import GOLDEN, record_smoke_runs

from image_classifiers.pipelines.model_training import create_pipeline

# Until the evaluation sub-pipeline returns the model and metrics for MLflow a second time
# (node mlflow_records, conf/base/catalog_model_training.yml), they are not logged. Strict:
# this fails once the node is there; then delete it.
_NO_MLFLOW_RECORDS = not any(n.name.endswith("mlflow_records") for n in create_pipeline().nodes)

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
#: (what changed, golden value, new value), with the reason beside each.
INTENDED: list[tuple[str, Any, Any]] = [
    # The transfer model's name follows no parameter (issue #18, point 6): the base is the
    # run's "architecture" tag, not part of the registered name.
    ("registered_models", "transfer_vgg16_keras", "transfer_keras"),
    # Phase 1's metrics are logged by kedro-mlflow's MlflowMetricsHistoryDataset (prefix).
    (
        "runs/xception_cats/xception_cats.transfer/metrics",
        _FEATURE_EXTRACTION[:9],
        _FEATURE_EXTRACTION[9:],
    ),
]
# MLflow samples system metrics every 10 s: whether a short smoke run got a sample is timing.
TIMING = ("system_metrics",)


def _apply_intended(golden: dict[str, Any]) -> dict[str, Any]:
    """The golden record with the intended differences made."""
    expected = json.loads(json.dumps(golden))
    for where, old, new in INTENDED:
        if where == "registered_models":
            models = expected["registered_models"]
            models[new] = models.pop(old)
            continue
        *run, field = where.removeprefix("runs/").split("/")
        entry = expected["runs"]["/".join(run)]
        assert set(old) <= set(entry[field]), f"{where}: {old} not in the golden record"
        entry[field] = sorted((set(entry[field]) - set(old)) | set(new))
    return expected


def _without_timing(record: dict[str, Any]) -> dict[str, Any]:
    runs = {
        name: {k: v for k, v in run.items() if k not in TIMING}
        for name, run in record["runs"].items()
    }
    return {**record, "runs": runs}


@pytest.mark.slow
@pytest.mark.xfail(_NO_MLFLOW_RECORDS, reason="no mlflow_records node yet (#18)", strict=True)
def test_the_smoke_runs_leave_what_they_left_before_the_redesign(tmp_path):
    record = _without_timing(record_smoke_runs(tmp_path))
    expected = _without_timing(_apply_intended(json.loads(GOLDEN.read_text())))
    assert record["registered_models"] == expected["registered_models"]
    assert sorted(record["runs"]) == sorted(expected["runs"])
    for name, run in expected["runs"].items():
        assert record["runs"][name] == run, name
