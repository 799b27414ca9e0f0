"""Whole retraining runs (kedro run --pipelines=retrain) against a temporary tracking store:
first promotion, a weaker challenger, duplicates, an injected crash and its rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from retrain_project import (
    MODEL_NAME,
    add_incoming,
    incoming_files,
    make_project,
    run_retrain,
)

from image_classifiers.core.params import RetrainParams
from image_classifiers.datasets import ImageSetDataset
from image_classifiers.pipelines.retrain import nodes
from image_classifiers.serving import load_classifier

pytestmark = pytest.mark.slow
SPLITS = ("train", "validation", "test")
PROCESSED = "data/01_raw/incoming_processed"  # conf/base/parameters_retrain.yml
# A deliberately weak challenger: built and compiled but not trained.
UNTRAINED = {"retrain": {"training": {"epochs": 0}, "min_score": 0.0}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project as the working directory, tracking to a temporary SQLite store."""
    root = make_project(tmp_path / "project")
    monkeypatch.chdir(root)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    yield root
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def report(root: Path) -> dict:
    return json.loads((root / "data/08_reporting/retrain/report.json").read_text())


def served_with_its_temperature(root: Path, version: str) -> bool:
    """The challenger was calibrated on the validation split; its served version applies it."""
    decisions = json.loads((root / "data/08_reporting/retrain/decisions.json").read_text())
    (metrics,) = (decision["challenger_metrics"] for decision in decisions.values())
    assert "per_class" in metrics and metrics["temperature"] > 0
    served = load_classifier(f"models:/{MODEL_NAME}/{version}").temperature
    assert served == pytest.approx(metrics["temperature"])
    return True


def challenger(root: Path) -> dict:
    """The report's one challenger (the tiny project's retrain.model)."""
    (registration,) = report(root)["challengers"].values()
    return registration


def pool_hashes(root: Path) -> list[str]:
    """SHA-256 of every image in the pool, read the way the next run reads it."""
    splits = [ImageSetDataset(str(root / "data/05_model_input" / s)).load() for s in SPLITS]
    retrain = RetrainParams(incoming_dir=str(root / "nowhere"), processed_dir=PROCESSED)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        _images, delivery = nodes.collect_images(*splits, retrain)
        return [r["sha256"] for r in delivery["pool"]]


def has_its_model_card(root: Path, client: mlflow.MlflowClient, version: str) -> bool:
    """The challenger's model card: a file, the version's description and an artifact of the
    logged model."""
    (card,) = (root / "data/08_reporting/retrain/model_cards").glob("*.md")
    text = card.read_text()
    assert text.startswith("# ") and "temperature" in text.lower()
    assert client.get_model_version(MODEL_NAME, version).description == text
    logged = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{version}"))
    assert (logged / "artifacts" / "model_card.md").read_text() == text
    return True


def versions(client: mlflow.MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'"))


def champion(client: mlflow.MlflowClient) -> str:
    return str(client.get_registered_model(MODEL_NAME).aliases["champion"])


def deliver_again(processed: Path, incoming: Path) -> None:
    for path in processed.rglob("*.jpg"):
        target = incoming / path.relative_to(processed)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def latest_run(client: mlflow.MlflowClient):
    experiment = client.get_experiment_by_name("image_classifiers")
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0]


def test_retrain_promotes_then_keeps_and_never_counts_twice(project, monkeypatch):
    # 0. Nothing delivered: trains nothing, registers nothing, and says so.
    run_retrain(project)
    assert report(project)["challengers"] == {} and report(project)["new_images"] == 0
    client = mlflow.MlflowClient()
    assert client.search_registered_models(f"name='{MODEL_NAME}'") == []

    # 1. First delivery: no champion yet, so a good challenger becomes the champion.
    add_incoming(project, 8, seed=1)
    run_retrain(project)
    first, delivery = challenger(project), report(project)
    assert first["action"] == "promote", first["reason"]
    assert delivery["new_images"] == 8 and delivery["new_per_class"] == {"cat": 4, "dog": 4}
    assert champion(client) == first["version"] == "1"
    assert len(pool_hashes(project)) == 8
    assert incoming_files(project) == []  # moved aside after success ...
    processed = Path(delivery["processed_dir"])
    assert len(list(processed.rglob("*.jpg"))) == 8  # ... and kept
    run = client.get_run(first["mlflow_run_id"])
    assert run.data.tags["retrain.action"] == "promote"
    assert (
        run.data.metrics["retrain.new_images"]
        == 8
        == 2 * run.data.metrics["retrain.new_images.cat"]
    )
    assert run.data.metrics["retrain.challenger.test_accuracy"] >= 0.75
    assert {a.path for a in client.list_artifacts(run.info.run_id, "retrain")} == {
        "retrain/decisions.json",
        "retrain/report.json",
    }
    # Per epoch, live (MlflowEpochMetrics); calibrated, served with its temperature; its card.
    assert (
        run.data.metrics["loss"] > 0
        and served_with_its_temperature(project, "1")
        and has_its_model_card(project, client, "1")
    )

    # 2. The same files delivered again: recognised, set aside, nothing trained or added.
    deliver_again(processed, project / "data/01_raw/incoming")
    run_retrain(project)
    again = report(project)
    assert again["challengers"] == {} and again["new_images"] == 0
    assert len(again["duplicates"]) == 8 and len(pool_hashes(project)) == 8
    assert incoming_files(project) == [] and versions(client) == ["1"]

    # 3. A weaker challenger (0 epochs: untrained) does not replace the champion.
    add_incoming(project, 8, seed=2)
    run_retrain(project, UNTRAINED)
    weak = challenger(project)
    assert weak["action"] == "keep", weak["reason"]
    assert weak["challenger_score"] < weak["champion_score"] + 0.01
    assert champion(client) == "1" and weak["version"] == "2"
    assert str(client.get_registered_model(MODEL_NAME).aliases["challenger"]) == "2"
    assert client.get_model_version(MODEL_NAME, "2").tags["retrain.action"] == "keep"
    assert len(pool_hashes(project)) == 16  # the data is kept even if the model is not

    # 4. A crash mid-run (here: while registering the challenger) changes nothing. (Steps 4
    # and 5 skip training only to save time.)
    delivered = add_incoming(project, 4, seed=3)
    before = pool_hashes(project)

    def crash(*args, **kwargs):
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="injected failure"):
        patch.setattr(nodes, "log_classifier", crash)
        run_retrain(project, UNTRAINED)
    assert all(path.is_file() for path in delivered)
    assert pool_hashes(project) == before
    assert champion(client) == "1" and versions(client) == ["1", "2"]
    assert latest_run(client).info.status == "FAILED"

    # 5. The rerun adds the delivery exactly once.
    run_retrain(project, UNTRAINED)
    assert report(project)["new_images"] == 4 and challenger(project)["action"] == "keep"
    assert len(pool_hashes(project)) == 20 == len(set(pool_hashes(project)))
    assert incoming_files(project) == []
