"""The lr_find pipeline: built for its target pipeline (its data and model, no training),
run end to end on a generated MNIST file, and a wrong target stopped with the usable ones."""

from __future__ import annotations

import json

import pytest
from fixture_archives import write_mnist_npz
from mlflow_record import summarise_store
from project_copies import copy_project, run_pipeline

from image_classifiers.pipelines.lr_find.pipeline import (
    LrFindTargetHook,
    create_pipeline,
    target_pipeline,
)


class Context:
    """What the hook reads of a Kedro context: the parameters, through the config loader."""

    def __init__(self, parameters: dict):
        self.config_loader = {"parameters": parameters}


def test_the_pipeline_runs_the_targets_data_and_model_then_the_sweep():
    names = {node.name for node in target_pipeline("lenet_mnist").nodes}
    assert "lenet_mnist.find_learning_rate" in names
    assert "lenet_mnist.build_model" in names
    assert any(name.startswith("lenet_mnist.") and "decode" in name for name in names)
    assert not any(name.endswith(("train_model", "evaluate_model")) for name in names)
    # model_training reads the decoded splits: its model only.
    default = target_pipeline("model_training")
    assert {node.name for node in default.nodes} == {
        "mini_xception.build_model",
        "mini_xception.find_learning_rate",
    }
    assert "params:training" in default.inputs()


def test_a_target_that_trains_no_single_model_is_refused_with_the_usable_ones():
    with pytest.raises(ValueError, match=r"choose one of: .*lenet_mnist.*model_training"):
        target_pipeline("compare_architectures")
    with pytest.raises(ValueError, match="'no_such_pipeline'"):
        target_pipeline("no_such_pipeline")


def test_the_hook_reads_the_target_before_kedro_builds_the_pipeline():
    hook = LrFindTargetHook()
    try:
        hook.after_context_created(Context({"lr_find": {"target": "lenet_mnist"}}))
        assert "lenet_mnist.find_learning_rate" in {n.name for n in create_pipeline().nodes}
        with pytest.raises(ValueError, match="'compare_architectures'"):
            hook.after_context_created(Context({"lr_find": {"target": "compare_architectures"}}))
        assert "lenet_mnist.find_learning_rate" in {n.name for n in create_pipeline().nodes}
    finally:
        hook.after_context_created(Context({}))  # back to the default for later tests
    assert "mini_xception.find_learning_rate" in {n.name for n in create_pipeline().nodes}


@pytest.mark.slow
def test_lr_find_on_lenet_mnist_writes_and_logs_the_suggestion(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mnist = write_mnist_npz(tmp_path / "mnist.npz")
    params = {
        "lr_find": {"target": "lenet_mnist", "steps": 30, "min_learning_rate": 1e-5},
        "mnist": {"download": {"local_path": str(mnist)}},
    }
    run_pipeline(project, "lr_find", params, env="smoke")
    reports = project / "data/08_reporting/lenet_mnist"
    found = json.loads((reports / "lr_find.json").read_text())
    assert 1e-5 <= found["suggested_learning_rate"] <= 10.0
    assert found["method"] and found["steps_run"] <= 30
    assert (reports / "lr_find.png").stat().st_size > 5000
    assert not (project / "data/06_models/lenet_mnist.keras").exists()  # nothing trained
    runs = summarise_store(f"sqlite:///{project / 'mlflow.db'}")["runs"]
    (logged,) = [run for name, run in runs.items() if name.endswith("lr_find.lenet_mnist")]
    assert {"lr_find.json", "lr_find.png"} <= set(logged["artifacts"])
