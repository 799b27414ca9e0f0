"""Typed parameters (image_classifiers.core.params): validation, defaults, command-line values."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import yaml
from click.testing import CliRunner
from kedro.framework.cli.project import run as kedro_run_command
from kedro.framework.cli.utils import _split_params
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.validation import ParameterValidationError
from kedro.validation.utils import _unwrap_optional
from project_copies import PROJECT, copy_project
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from image_classifiers.core import params as p
from image_classifiers.params_hooks import ReadOnlyOutputsError

# Every typed group and the parameter file that documents its defaults.
GROUPS = {
    "source": (p.SourceParams, "parameters_data_processing.yml"),
    "download": (p.DownloadParams, "parameters_data_processing.yml"),
    "extract": (p.ExtractParams, "parameters_data_processing.yml"),
    "split": (p.SplitParams, "parameters_data_processing.yml"),
    "decode": (p.DecodeParams, "parameters_data_processing.yml"),
    "data_checks": (p.DataChecksParams, "parameters_data_checks.yml"),
    "augmentation": (p.AugmentationParams, "parameters_model_training.yml"),
    "training": (p.TrainingParams, "parameters_model_training.yml"),
    "evaluation": (p.EvaluationParams, "parameters_model_training.yml"),
    "inspection": (p.InspectionParams, "parameters_model_training.yml"),
    "transfer": (p.TransferParams, "parameters_transfer_learning.yml"),
    "predict": (p.PredictParams, "parameters_predict.yml"),
    "retrain": (p.RetrainParams, "parameters_retrain.yml"),
    "export": (p.ExportParams, "parameters_export.yml"),
    "tune": (p.TuneParams, "parameters_tune.yml"),
}
# The keys a group cannot do without (they come from globals.yml).
REQUIRED = {
    "decode": {"image_size": [8, 8]},
    "transfer": {"base": "vgg16"},
    "tune": {"space": {"training": {"learning_rate": {"low": 1e-4, "high": 1e-2}}}},
}


@pytest.mark.parametrize(
    ("model", "given", "message"),
    [
        (p.TrainingParams, {"learnig_rate": 0.1}, "unknown key 'learnig_rate' (did you mean "),
        (p.TrainingParams, {"optimizer": "sgd"}, "optimizer\n  Input should be 'rmsprop', "),
        (p.TrainingParams, {"schedule": "step"}, "schedule\n  Input should be 'cosine'"),
        (p.TrainingParams, {"epochs": -1}, "epochs\n  Input should be greater than or equal to 0"),
        (p.TrainingParams, {"epochs": True}, "epochs\n  Input should be a valid integer"),
        (p.TrainingParams, {"batch_size": 0}, "batch_size\n  Input should be greater than"),
        (p.TrainingParams, {"batch_size": 2.5}, "batch_size\n  Input should be a valid integer"),
        (p.TrainingParams, {"learning_rate": 0}, "learning_rate\n  Input should be greater than 0"),
        (p.TrainingParams, {"learning_rate": "0.1"}, "learning_rate\n  Input should be a valid"),
        (p.TrainingParams, {"early_stopping_patience": 0}, "early_stopping_patience\n"),
        (p.TrainingParams, {"steps_per_execution": 0}, "steps_per_execution\n"),
        (p.TrainingParams, {"warmup_epochs": 2}, "set schedule to cosine"),
        (p.TrainingParams, {"warmup_epochs": 3, "epochs": 3, "schedule": "cosine"}, "fewer than"),
        (p.TrainingParams, {"warmup_epochs": -1, "schedule": "cosine"}, "warmup_epochs\n"),
        (p.TrainingParams, {"label_smoothing": 1.0}, "label_smoothing\n  Input should be less"),
        (p.TrainingParams, {"label_smoothing": -0.1}, "label_smoothing\n"),
        (p.EvaluationParams, {"test_time_flip": 1}, "test_time_flip\n"),
        (p.DownloadParams, {"sha256": "abc"}, "sha256\n  String should match pattern"),
        (p.DownloadParams, {"retries": -1}, "retries\n"),
        (p.DownloadParams, {"local_pth": "/x.zip"}, "did you mean 'local_path'?"),
        (p.ExtractParams, {"extensions": []}, "extensions\n  List should have at least 1 item"),
        (p.SplitParams, {"classes": ["cat"]}, "at least two file-name prefixes"),
        (p.SplitParams, {"classes": ["cat", "cat"]}, "names must be distinct"),
        (p.SplitParams, {"classes": ["cat", "../dog"]}, "usable as folder names"),
        (
            p.SplitParams,
            {"classes": ["cat", "dog"], "ranges": {"train": [0, 10], "test": [5, 12]}},
            "train [0, 10) and test [5, 12) share 5 indices (5–9)",
        ),
        (p.SplitParams, {"classes": "cat dog", "ranges": {"t": [5, 5]}}, "start must be below"),
        (p.SplitParams, {"classes": "cat dog", "ranges": {"t": "0:8"}}, "start-stop (0-1000)"),
        (p.SplitParams, {"classes": "cat dog", "ranges": {"t": 8}}, "got the number 8"),
        (p.SplitParams, {"fractions": {"train": 0}}, "fractions.train\n  Input should be greater"),
        (p.SplitParams, {"fractions": {"a": 1}, "ranges": {"b": [0, 1]}}, "exactly one of"),
        (p.SplitParams, {"ranges": None}, "exactly one of ranges and fractions"),
        (p.SourceParams, {"type": "folders"}, "Input should be 'kaggle_names', 'class_folders'"),
        (p.SourceParams, {"type": "keras_datasets"}, "needs name: one of mnist,"),
        (p.DecodeParams, {"image_size": [0, 8]}, "image_size.0\n  Input should be greater"),
        (p.DecodeParams, {"image_size": "big"}, "96 (square) or 96x128"),
        (p.DecodeParams, {"image_size": [8, 8], "on_bad_image": "drop"}, "'skip' or 'fail'"),
        (p.DecodeParams, {"image_size": [8, 8], "resample": "cubic"}, "'bicubic'"),
        (p.DecodeParams, {"image_size": [8, 8], "workers": 0}, "workers\n"),
        (p.AugmentationParams, {"zoom": 1.5}, "zoom\n  Input should be less than or equal to 1"),
        (p.AugmentationParams, {"horizontal_flip": "yes"}, "horizontal_flip\n"),
        (p.EvaluationParams, {"threshold": 2}, "threshold\n"),
        (
            p.PredictParams,
            {"batch_size": 0},
            "batch_size\n  Input should be greater than or equal to 1",
        ),
        (
            p.PredictParams,
            {"batch_size": -1},
            "batch_size\n  Input should be greater than or equal",
        ),
        (p.PredictParams, {"input_path": "x"}, "unknown key 'input_path'; allowed keys: source,"),
        (p.PredictParams, {"threshold": 1.5}, "threshold\n"),
        (p.EvaluationParams, {"batch_size": 0}, "batch_size\n"),
        (p.InspectionParams, {"grad_cam_grd": 4}, "unknown key 'grad_cam_grd' (did you mean "),
        (p.InspectionParams, {"feature_map_layers": -1}, "feature_map_layers\n  Input should"),
        (p.InspectionParams, {"batch_size": 0}, "batch_size\n  Input should be greater"),
        (p.RetrainParams, {"min_improvment": 0.1}, "did you mean 'min_improvement'?"),
        (p.RetrainParams, {"on_bad_image": "drop"}, "on_bad_image\n  Input should be 'skip'"),
        (p.RetrainParams, {"force": "yes"}, "force\n  Input should be a valid boolean"),
        (p.RetrainParams, {"min_improvement": -0.1}, "min_improvement\n  Input should be"),
        (p.RetrainParams, {"registered_model_name": ""}, "registered_model_name\n  String"),
        (p.RetrainParams, {"training": {"epoch": 1}}, "unknown key 'epoch' (did you mean"),
        (p.RetrainParams, {"training": {"epochs": -1}}, "training.epochs\n  Input should be"),
        (p.ModelOptions, {"architecture": "xception"}, "unknown architecture 'xception'"),
        (
            p.ModelOptions,
            {"architecture": "mini_xception", "dropot": 0.5},
            "unknown key 'dropot' (did you mean 'dropout'?); allowed keys: filters,",
        ),
        (p.ModelOptions, {"architecture": "resnet", "depth": "deep"}, "depth\n"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_key_and_the_rule(model, given, message):
    with pytest.raises(ValidationError) as error:
        model.model_validate(given)
    assert message in str(error.value)


def test_fractions_alone_replace_the_default_ranges():
    split = p.SplitParams.model_validate({"fractions": {"train": 0.8, "test": 0.2}})
    assert split.ranges is None and split.fractions == {"train": 0.8, "test": 0.2}
    assert p.SplitParams().ranges == {
        "train": (0, 1000),
        "validation": (1000, 1500),
        "test": (1500, 2500),
    }


def test_a_partial_dict_takes_the_defaults_and_a_model_passes_through():
    training = p.TrainingParams.model_validate({"epochs": 3, "optimizer": "AdamW"})
    assert (training.epochs, training.optimizer, training.batch_size) == (3, "adamw", 32)
    assert p.TrainingParams.model_validate(training) is training


def test_overrides_keep_the_rules_and_merge_only_what_was_given():
    overrides_model = p.overrides_of(p.TrainingParams)
    overrides = overrides_model.model_validate({"epochs": 4, "weight_decay": None})
    merged = p.TrainingParams(learning_rate=0.01, weight_decay=0.1).merged(overrides)
    assert (merged.epochs, merged.learning_rate, merged.weight_decay) == (4, 0.01, None)
    with pytest.raises(ValidationError, match="epochs\n  Input should be greater than or equal"):
        overrides_model.model_validate({"epochs": -1})
    with pytest.raises(ValidationError, match="unknown key 'epoch'"):
        overrides_model.model_validate({"epoch": 1})


@pytest.mark.parametrize(
    ("given", "expected"),
    [(96, (96, 96)), ("96", (96, 96)), ("96x128", (96, 128)), ([96, 128], (96, 128))],
)
def test_an_image_size_is_a_pair_a_square_or_hxw(given, expected):
    assert p.DecodeParams(image_size=given).image_size == expected


@pytest.mark.parametrize("group", GROUPS)
def test_python_m_params_prints_every_default_and_conf_base_repeats_none(group):
    model, file_name = GROUPS[group]
    printed = "\n".join(p.describe(model))
    defaults = model.model_validate(REQUIRED.get(group, {}))
    for key, field in model.model_fields.items():
        value = getattr(defaults, key)
        if isinstance(value, BaseModel):  # a nested group: listed by its key
            assert f"  {key}:" in printed, key
        elif not field.is_required():
            assert f"  {key}: {json.dumps(to_jsonable_python(value))}" in printed, key
    # A key with a default is set in conf/base only to share a value (globals.yml, a
    # runtime parameter), never to repeat the default: the defaults live in one place.
    set_in_yaml = yaml.safe_load((PROJECT / "conf" / "base" / file_name).read_text())[group] or {}
    with_default = {k for k, f in model.model_fields.items() if not f.is_required()}
    interpolated = {k for k, v in set_in_yaml.items() if "${" in str(v)}
    # Not a repeated default: off for Python callers (no files left behind), on for kedro run.
    switched_on = {"checkpoint_dir"} if group == "training" else set()
    assert not set(set_in_yaml) & with_default - interpolated - switched_on


def _context_params(tmp_path: Path, monkeypatch, cli_params: str, env: str | None = None) -> dict:
    """The parameters a ``kedro run --params=<cli_params> [--env=<env>]`` sees, after
    Kedro's validation."""
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    try:
        runtime_params = _split_params(None, None, cli_params)  # kedro run's own parser
        with KedroSession.create(
            project_path=project, env=env, runtime_params=runtime_params
        ) as session:
            return session.load_context().params
    finally:
        bootstrap_project(PROJECT)


def test_list_values_can_be_given_on_the_command_line(tmp_path, monkeypatch):
    params = _context_params(
        tmp_path,
        monkeypatch,
        "decode.image_size=96,split.ranges.train=0-8,split.ranges.test=8 - 12,"
        "split.classes=dog cat,extract.extensions=.png .jpg",
    )
    assert params["decode"].image_size == (96, 96)
    assert params["split"].ranges == {"train": (0, 8), "test": (8, 12)}
    assert params["split"].classes == ["dog", "cat"]
    assert params["extract"].extensions == [".png", ".jpg"]
    params = _context_params(tmp_path / "again", monkeypatch, "decode.image_size=96x128")
    assert params["decode"].image_size == (96, 128)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pipeline", "given", "expected"),
    [
        (
            "model_training",
            "training.learnig_rate=0.1",
            ("training", "unknown key 'learnig_rate' (did you mean 'learning_rate'?)"),
        ),
        (
            "model_training",
            "inspection.grad_cam_grd=4",
            ("inspection", "unknown key 'grad_cam_grd' (did you mean 'grad_cam_grid'?)"),
        ),
        (
            "retrain",
            "retrain.min_improvment=0.1",
            ("retrain", "unknown key 'min_improvment' (did you mean 'min_improvement'?)"),
        ),
        (
            "retrain",
            "retrain.training.epoch=1",
            ("retrain", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ),
        (
            "image_folders",
            "image_folders.inspection.grad_cam_grd=4",
            (
                "image_folders.inspection",
                "unknown key 'grad_cam_grd' (did you mean 'grad_cam_grid'?)",
            ),
        ),
    ],
)
def test_a_misspelt_key_stops_kedro_run_before_any_node(
    tmp_path, monkeypatch, pipeline, given, expected
):
    group, message = expected
    error = _smoke_run_error(tmp_path, monkeypatch, pipeline, given)
    # Raised while the catalog was made, before the runner.
    assert isinstance(error, ParameterValidationError), error
    assert f"Parameter '{group}': " in str(error)
    assert message in str(error)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "retrain.model=nope",
            "retrain.model is 'nope' but models has no such entry; choose one of ['alexnet',",
        ),
        (
            "models.mini_xception.dropot=0.5",
            "models.mini_xception (retrain.model): 1 validation error for ModelOptions",
        ),
    ],
)
def test_retrain_model_names_a_valid_models_entry_before_any_node(
    tmp_path, monkeypatch, given, message
):
    # Kedro checks each group alone; ParamsCrossCheckHook checks one against the other.
    error = _smoke_run_error(tmp_path, monkeypatch, "retrain", given)
    assert isinstance(error, ValueError) and message in str(error), error
    assert "dropot" not in given or "did you mean 'dropout'?" in str(error)


def _smoke_run_error(tmp_path: Path, monkeypatch, pipeline: str, given: str) -> BaseException:
    """The error ``kedro run --env=smoke --pipelines=<pipeline> --params=<given>`` ends in,
    after checking that no node ran (nothing written under data/)."""
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bootstrap_project(project)
    try:
        result = CliRunner().invoke(
            kedro_run_command, ["--env=smoke", f"--pipelines={pipeline}", f"--params={given}"]
        )
    finally:
        bootstrap_project(PROJECT)
    assert result.exception is not None, result.output
    data = project / "data"
    assert not data.exists() or not any(path.is_file() for path in data.rglob("*"))
    return result.exception


def test_a_retrain_override_travels_as_the_keys_given():
    """Dumped (logged) and read back, a key of retrain.training that was not given must not
    come back as None (which would override training's value)."""
    retrain = p.RetrainParams.model_validate({"training": {"learning_rate": 0.01}})
    plain = to_jsonable_python(retrain)
    assert plain["training"] == {"epochs": 30, "learning_rate": 0.01}
    again = p.RetrainParams.model_validate(plain)
    merged = p.TrainingParams(optimizer="adam", weight_decay=0.1).merged(again.training)
    assert (merged.epochs, merged.learning_rate) == (30, 0.01)
    assert (merged.optimizer, merged.weight_decay) == ("adam", 0.1)
    # A key given as null is given: it still overrides.
    cleared = p.RetrainParams.model_validate({"training": {"weight_decay": None}})
    assert to_jsonable_python(cleared)["training"] == {"epochs": 30, "weight_decay": None}


def test_node_arguments_are_typed_so_kedro_validates_them():
    """Each group reaches its nodes as its model: Kedro validates exactly the typed ones."""
    from kedro.framework.project import pipelines
    from kedro.validation import TypeExtractor, type_extractor

    bootstrap_project(PROJECT)
    with mock.patch.object(type_extractor.logger, "warning") as warning:
        types = TypeExtractor(dict(pipelines)).extract_types_from_pipelines()
    # Every node annotates a group alike (X and X | None conflict when both pipelines run).
    assert not warning.call_args_list
    # Every parameter a node reads is typed, but the whole `models` mapping (retrain picks
    # an entry at run time; the entry is validated as ModelOptions when it is built).
    read = {
        name.removeprefix("params:")
        for pipeline in pipelines.values()
        for node in pipeline.nodes
        for name in node.inputs
        if name.startswith("params:")
    }
    assert read - set(types) == {"models"}
    for group, (model, _) in GROUPS.items():
        assert _unwrap_optional(types[group]) is model, group
    assert _unwrap_optional(types["models.mini_xception"]) is p.ModelOptions
    assert all(issubclass(_unwrap_optional(t), BaseModel) for t in types.values())


def test_experiments_without_augmentation_really_have_none(tmp_path, monkeypatch):
    # An empty group takes the model's defaults (the book's flip/rotation/zoom), which would
    # flip MNIST digits and blur the over-fitting study's baseline: these groups must say so.
    params = _context_params(tmp_path, monkeypatch, "")
    identity = p.AugmentationParams(horizontal_flip=False, rotation=0.0, zoom=0.0)
    plain = ["lenet_mnist", "cnn_fashion_mnist", "vgg16_cifar10"]
    plain += [f"cnn_cifar10_{variant}" for variant in ("baseline", "l2", "dropout", "batch_norm")]
    for name in plain:
        assert params[name]["augmentation"] == identity, name
    study = params["cnn_cifar10_augmentation"]["augmentation"]
    assert study.horizontal_flip and study.translation > 0
    assert study.rotation == study.zoom == 0.0


@pytest.mark.slow
def test_env_recipes_reach_image_folders_but_not_the_experiments(tmp_path, monkeypatch):
    # image_folders copies the project's groups (${training} ...), which Kedro resolves in
    # each environment before merging them: conf/improved copies its own over them.
    base = _context_params(tmp_path / "base", monkeypatch, "")
    improved = _context_params(tmp_path / "improved", monkeypatch, "", env="improved")
    assert improved["training"].optimizer == "adamw" and base["training"].optimizer == "rmsprop"
    for group in ("training", "augmentation", "evaluation"):
        assert improved["image_folders"][group] == improved[group], group
        assert base["image_folders"][group] == base[group], group
    # The keys conf/improved leaves alone stay conf/base's (globals.seed, the epochs).
    assert improved["image_folders"]["training"].seed == base["training"].seed is not None
    assert improved["image_folders"]["training"].epochs == base["training"].epochs
    # A command-line value still wins over the recipe.
    overridden = _context_params(
        tmp_path / "cli", monkeypatch, "image_folders.training.epochs=5", env="improved"
    )
    assert overridden["image_folders"]["training"].epochs == 5
    assert overridden["image_folders"]["training"].schedule == "cosine"
    # conf/smoke copies its groups over image_folders' the same way.
    smoke = _context_params(tmp_path / "smoke", monkeypatch, "", env="smoke")
    for group in ("training", "evaluation", "inspection", "transfer"):
        assert smoke["image_folders"][group] == smoke[group], group
    assert smoke["image_folders"]["training"].epochs == 1
    # The experiments reproduce the book's studies: their own recipes, in any environment
    # (test-time flips would mirror MNIST digits).
    for name in ("lenet_mnist", "cnn_fashion_mnist", "vgg16_cifar10"):
        assert improved[name]["evaluation"] == base[name]["evaluation"], name
        assert improved[name]["training"] == base[name]["training"], name


def test_a_read_only_output_folder_stops_the_run_before_any_node(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    models = project / "data" / "06_models"
    models.parent.mkdir()
    models.write_text("")  # a file, not a folder: nothing can be written in it, root or not
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bootstrap_project(project)
    try:
        result = CliRunner().invoke(kedro_run_command, ["--env=smoke", "--pipelines=__default__"])
    finally:
        bootstrap_project(PROJECT)
    assert isinstance(result.exception, ReadOnlyOutputsError), result.output
    assert str(result.exception).startswith(f"Cannot write to {models}, where this run saves")
    assert sorted(p.name for p in (project / "data").iterdir()) == ["06_models"]  # nothing ran
