"""The tune pipeline: a study of 4 trials over 2 worker processes on a tiny model, resumed
with a failing trial, and the bad input that stops a search before any trial."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from project_copies import PROJECT, make_project, run_pipeline
from pydantic import ValidationError

from image_classifiers.core.params import (
    AugmentationParams,
    ModelOptions,
    TrainingParams,
    TuneParams,
)
from image_classifiers.pipelines.tune.study import check_space, open_storage, run_search

# model_training's model, made tiny; the search varies its learning rate (one that learns,
# one that cannot) and a dropout that Keras refuses (a trial failing while it trains).
PARAMETERS = """
models:
  mini_xception: {architecture: simple_convnet, filters: [4], dropout: 0.0}
augmentation: {horizontal_flip: false, rotation: 0.0, zoom: 0.0}
training: {epochs: 2, batch_size: 8, seed: 7}
"""
SPACE = """
tune:
  pruner_startup_trials: 1
  pruner_warmup_epochs: 0
  space:
    training:
      learning_rate: {choices: [1.0e-9, 0.03]}
    model_options:
      dropout: {choices: [0.0, 1.5]}
"""
GOOD, BAD, BROKEN = (0.03, 0.0), (1.0e-9, 0.0), (0.03, 1.5)
STUDY = "model_training"  # tune.study_name's default: the target


def image_set(n: int, seed: int) -> dict:
    """Dark class-0 and bright class-1 noisy 16x16 pictures."""
    labels = (np.arange(n) % 2).astype(np.int32)
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(60 + 130 * labels[:, None, None, None], 30, (n, 16, 16, 3)), 0, 255)
    return {
        "images": images.astype(np.uint8),
        "labels": labels,
        "classes": ["cat", "dog"],
        "files": [f"{i}.jpg" for i in range(n)],
    }


def enqueue(storage: str, *trials: tuple[float, float]) -> None:
    """Fix the next trials' values, so which one is pruned or fails does not depend on luck."""
    study = optuna.create_study(
        study_name=STUDY, storage=open_storage(storage), load_if_exists=True
    )
    for rate, dropout in trials:
        study.enqueue_trial({"training.learning_rate": rate, "model_options.dropout": dropout})


def trial_runs(project: Path) -> dict[int, mlflow.entities.Run]:
    """The trials' MLflow runs, by trial number."""
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`optuna.study` = 'model_training'",
    )
    return {int(run.data.tags["optuna.trial"]): run for run in runs}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after a 4-trial study over 2 workers, the bad learning rate enqueued
    after a good one (so the bad ones are compared with a completed trial and pruned)."""
    sets = {"train": image_set(32, 1), "validation": image_set(16, 2)}
    root = make_project(tmp_path_factory.mktemp("tune") / "project", PARAMETERS, sets)
    (root / "conf" / "base" / "parameters_tune.yml").write_text(SPACE)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        enqueue("sqlite:///data/06_models/optuna.db", GOOD, BAD, GOOD, BAD)
        run_pipeline(root, "tune", {"tune": {"n_trials": 4, "n_workers": 2}})
    return root


@pytest.mark.slow
def test_a_study_over_two_workers_leaves_nested_runs_and_the_best_parameters(project):
    trials = optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{project / 'data/06_models/optuna.db'}"
    ).trials
    assert len(trials) == 4
    states = {trial.number: trial.state for trial in trials}
    assert optuna.trial.TrialState.PRUNED in states.values()
    runs = trial_runs(project)
    assert sorted(runs) == [0, 1, 2, 3]
    parents = {run.data.tags["mlflow.parentRunId"] for run in runs.values()}
    assert len(parents) == 1  # all in the study's run
    for number, run in runs.items():
        assert run.data.tags["optuna.state"] == states[number].name
        assert run.info.status == ("KILLED" if states[number].name == "PRUNED" else "FINISHED")
        assert float(run.data.params["training.learning_rate"]) in (GOOD[0], BAD[0])
    completed = [run for run in runs.values() if run.info.status == "FINISHED"]
    history = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_metric_history(
        completed[0].info.run_id, "val_loss"
    )
    assert [m.step for m in history] == [0, 1]  # every epoch
    report = yaml.safe_load(
        (project / "data/08_reporting/tune/model_training/best_parameters.json").read_text()
    )
    assert report["params"]["training.learning_rate"] == GOOD[0]
    assert report["best_mlflow_run_id"] in {run.info.run_id for run in completed}
    for name in ("trials.csv", "optimization_history.html", "param_importances.html"):
        assert (project / "data/08_reporting/tune/model_training" / name).stat().st_size
    # The one-command way to train with them: the conf environment "tuned".
    tuned = yaml.safe_load((project / "conf/tuned/parameters_model_training.yml").read_text())
    assert tuned == {
        "models": {"mini_xception": {"dropout": 0.0}},
        "training": {"learning_rate": 0.03},
    }
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, env="tuned") as session:
            params = session.load_context().params
    finally:
        bootstrap_project(PROJECT)
    assert params["training"].learning_rate == 0.03
    assert params["models"]["mini_xception"].options["dropout"] == 0.0


@pytest.mark.slow
def test_a_resumed_study_adds_trials_and_records_a_failing_one(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    enqueue("sqlite:///data/06_models/optuna.db", BROKEN, GOOD)
    # No pruner: whether GOOD ties the completed GOOD trials' median to the last bit is luck.
    run_pipeline(project, "tune", {"tune": {"n_trials": 2, "pruner": "none"}})
    study = optuna.load_study(study_name=STUDY, storage="sqlite:///data/06_models/optuna.db")
    assert [t.state.name for t in study.trials[4:]] == ["FAIL", "COMPLETE"]
    runs = trial_runs(project)
    assert runs[4].info.status == "FAILED" and runs[4].data.tags["optuna.state"] == "FAIL"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"space": {}}, "the search space is empty"),
        ({"space": {"training": {}}}, "the search space is empty"),
        (
            {"space": {"training": {"learnig_rate": {"low": 0.1, "high": 1}}}},
            "did you mean 'learning_rate'",
        ),
        ({"space": {"optimizer": {"x": {"choices": [1]}}}}, "Input should be 'training'"),
        ({"space": {"training": {"epochs": {"low": 3, "high": 3}}}}, "low must be below high"),
        ({"space": {"training": {"epochs": {"low": 3}}}}, "low must be below high"),
        ({"space": {"training": {"epochs": {"low": 1, "high": 3, "choices": [2]}}}}, "not both"),
        (
            {"space": {"training": {"learning_rate": {"low": 0, "high": 1, "log": True}}}},
            "log needs low > 0",
        ),
        ({"space": {"training": {"batch_size": {"choices": [8, 8]}}}}, "names must be distinct"),
        ({"n_trials": 1, "n_workers": 2}, "n_workers (2) is more than n_trials (1)"),
    ],
)
def test_a_bad_search_is_refused_with_its_reason(given, message):
    given.setdefault("space", {"training": {"learning_rate": {"low": 0.1, "high": 1}}})
    with pytest.raises(ValidationError, match=re.escape(message)):
        TuneParams.model_validate(given)


GROUPS = {
    "training": TrainingParams(),
    "augmentation": AugmentationParams(),
    "model_options": ModelOptions(architecture="simple_convnet"),
}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"training": {"label_smoothing": {"low": 0.0, "high": 1.5}}},
            "training.label_smoothing: 1.5",
        ),
        ({"training": {"warmup_epochs": {"low": 0, "high": 3}}}, "set schedule to cosine"),
        ({"model_options": {"units": {"choices": [1, 2]}}}, "unknown key 'units'"),
    ],
)
def test_a_space_the_target_cannot_take_is_refused_before_any_trial(space, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_space(TuneParams(space=space), GROUPS)


def test_an_unreachable_storage_is_named():
    with pytest.raises(ValueError, match=r"cannot be used \(OperationalError"):
        open_storage("postgresql://nobody@127.0.0.1:9/none")


@pytest.mark.slow
def test_a_study_of_another_space_is_not_resumed(project):
    storage = f"sqlite:///{project / 'data/06_models/optuna.db'}"
    before = len(optuna.load_study(study_name=STUDY, storage=storage).trials)
    other = {"training": {"learning_rate": {"low": 1e-4, "high": 1e-2}}}
    tune = TuneParams(space=other, storage=storage, n_trials=1)
    groups = {**GROUPS, "model_options": ModelOptions(architecture="simple_convnet")}
    with pytest.raises(ValueError, match="searches another space or target"):
        run_search({}, {}, tune, groups)
    assert len(optuna.load_study(study_name=STUDY, storage=storage).trials) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"storage": "postgresql://nobody@127.0.0.1:9/none"}, "cannot be used"),
        ({"target": "nope"}, "tune.target 'nope' is no training pipeline; one of: "),
        ({"target": "tune"}, "tune.target 'tune' is no training pipeline; one of: "),
        ({"target": "compare_architectures"}, "trains 3 models with model_training's nodes"),
    ],
)
def test_a_bad_search_stops_the_run_before_any_node(project, monkeypatch, tune, message):
    monkeypatch.chdir(project)
    with pytest.raises(Exception, match=re.escape(message)):
        run_pipeline(project, "tune", {"tune": tune})


def test_a_sqlite_study_transaction_holds_the_write_lock_from_its_start(tmp_path):
    """Two workers must not both take one queued trial: the read of its state and the write
    that marks it running are one locked step (no worker writes in between)."""
    path = tmp_path / "study.db"
    storage = open_storage(f"sqlite:///{path}")
    optuna.create_study(study_name="s", storage=storage).enqueue_trial({"x": 1.0})
    with storage.engine.begin() as worker:  # a worker that has read, not yet written
        worker.exec_driver_sql("SELECT state FROM trials")
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state.name for t in study.trials] == ["WAITING"]
