"""Errors with advice end `kedro run` with their message alone; other errors keep a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kedro.io import AbstractDataset, DataCatalog, DatasetError
from project_copies import copy_project, run_pipeline

from image_classifiers.core.data.download import ArchiveDownloadError
from image_classifiers.core.params import TrainingParams
from image_classifiers.datasets import ImageSetDataset
from image_classifiers.errors import TRACEBACK_VARIABLE, concise_excepthook, is_user_error


def raised(call, *args, **kwargs) -> BaseException:
    try:
        call(*args, **kwargs)
    except Exception as error:
        return error
    raise AssertionError(f"{call} raised nothing")


def test_the_packages_own_checks_are_user_errors():
    assert is_user_error(raised(TrainingParams, optimizer="sgdd"))
    assert is_user_error(ArchiveDownloadError("no archive"))


def test_a_parameter_naming_no_configured_key_is_a_user_error(tmp_path):
    from kedro.config import OmegaConfigLoader

    from image_classifiers import settings

    project = copy_project(tmp_path / "project")
    args = {**settings.CONFIG_LOADER_ARGS, "runtime_params": {"image_folders": {"model": "nope"}}}
    loader = OmegaConfigLoader(str(project / "conf"), **args)
    error = raised(loader.__getitem__, "parameters")
    assert is_user_error(error)
    assert "The model 'nope' is not a key of models; choose one of [" in str(error)
    assert "'mini_xception'" in str(error) and "image_folders.model_options" in str(error)
    args["runtime_params"] = {"image_folders": {"model": "simple_convnet"}}
    chosen = OmegaConfigLoader(str(project / "conf"), **args)["parameters"]["image_folders"]
    assert chosen["model_options"]["architecture"] == "simple_convnet"


def test_errors_from_elsewhere_are_not():
    assert not is_user_error(raised(np.zeros, -1))  # a ValueError, but numpy's
    assert not is_user_error(raised(dict().__getitem__, "key"))
    assert not is_user_error(ValueError("made up, never raised"))


def test_the_hook_prints_user_errors_alone_and_passes_others_on(capsys, monkeypatch):
    passed_on = []
    hook = concise_excepthook(lambda *args: passed_on.append(args[1]))
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)

    user_error = raised(TrainingParams, optimizer="sgdd")
    hook(type(user_error), user_error, user_error.__traceback__)
    other = raised(np.zeros, -1)
    hook(type(other), other, other.__traceback__)

    assert passed_on == [other]
    printed = capsys.readouterr().err
    assert "ValidationError: 1 validation error for TrainingParams\noptimizer\n" in printed
    assert "Input should be 'rmsprop', 'adam' or 'adamw'" in printed
    assert "errors.pydantic.dev" not in printed and "[type=" not in printed
    assert TRACEBACK_VARIABLE in printed

    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    hook(type(user_error), user_error, user_error.__traceback__)
    assert passed_on == [other, user_error]


def test_a_failure_while_cleaning_up_after_a_user_error_keeps_its_message(capsys, monkeypatch):
    passed_on = []
    hook = concise_excepthook(lambda *args: passed_on.append(args[1]))
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)

    def close_runs_after_a_user_error() -> None:
        try:
            raise ArchiveDownloadError("no archive: set download.local_path")
        except ArchiveDownloadError:
            raise RuntimeError("attempt to write a readonly database") from None

    error = raised(close_runs_after_a_user_error)
    hook(type(error), error, error.__traceback__)
    assert passed_on == []
    printed = capsys.readouterr().err
    assert "ArchiveDownloadError: no archive: set download.local_path\n" in printed
    assert "(Cleaning up after it failed too: RuntimeError.)" in printed


def test_a_kedro_wrapped_dataset_error_counts_as_what_it_wraps(tmp_path):
    catalog = DataCatalog({"train_set": ImageSetDataset(str(tmp_path / "train"))})
    wrapped = raised(catalog.load, "train_set")
    assert isinstance(wrapped, DatasetError) and str(wrapped).startswith("train_set: No decoded")
    assert is_user_error(wrapped)

    class Broken(AbstractDataset):
        def load(self):
            raise KeyError("a bug, not advice")

        def save(self, data):
            pass

        def _describe(self):
            return {}

    bug = raised(DataCatalog({"x": Broken()}).load, "x")
    assert isinstance(bug, DatasetError) and not is_user_error(bug)


@pytest.mark.slow
def test_transfer_learning_before_the_data_pipeline_gives_advice_only(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    error = raised(run_pipeline, project, "transfer_learning")
    # What `kedro run --pipelines=transfer_learning` on a fresh clone ends with (the hook
    # prints a user error alone: tested above and end to end below).
    assert str(error).startswith("train_set: No decoded image set at")
    assert "Run the data pipeline first" in str(error)
    assert is_user_error(error)


def kedro_run(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``kedro run`` in ``project`` as a user would: no traceback variable, default store."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {TRACEBACK_VARIABLE, "MLFLOW_TRACKING_URI"}
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("kedro")), "run", *arguments],
        cwd=project,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_kedro_run_ends_with_the_message_not_a_traceback(tmp_path):
    project = copy_project(tmp_path / "project")
    missing = tmp_path / "nowhere" / "dogs-vs-cats.zip"
    result = kedro_run(
        project, "--pipelines=data_processing", f"--params=download.local_path={missing}"
    )
    assert result.returncode == 1
    assert f"ArchiveDownloadError: download.local_path points at '{missing}'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
