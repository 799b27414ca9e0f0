"""The keras_datasets source: Keras' own file formats, its own test split, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from data_runs import run_data_pipeline
from fixture_archives import (
    keras_arrays,
    write_cifar_archive,
    write_fashion_folder,
    write_mnist_npz,
)
from kedro.validation import ParameterValidationError
from pydantic import ValidationError

from image_classifiers.core.data.inputs import MEGABYTE
from image_classifiers.core.data.keras_datasets import (
    _FASHION_FILES,
    CLASS_NAMES,
    KerasDatasetError,
    extract_keras_dataset,
    fetch_keras_dataset,
    read_local_file,
)
from image_classifiers.core.data.split import SplitError
from image_classifiers.core.params import ArchiveLimits, DownloadParams, ExtractParams, SourceParams
from image_classifiers.datasets import ImageSetDataset

WRITERS = {
    "mnist": lambda folder: write_mnist_npz(folder / "mnist.npz"),
    "fashion_mnist": lambda folder: write_fashion_folder(folder / "fashion-mnist"),
    "cifar10": lambda folder: write_cifar_archive(folder / "cifar-10-python.tar.gz"),
    "cifar100": lambda folder: write_cifar_archive(
        folder / "cifar-100-python.tar.gz", "cifar100", per_class=(1, 1)
    ),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_reads_the_file_keras_downloads(tmp_path, name):
    arrays = read_local_file(WRITERS[name](tmp_path), name)

    channels = 1 if "mnist" in name else 3
    classes = len(CLASS_NAMES[name])
    per_class = (1, 1) if name == "cifar100" else (6, 2)
    expected = keras_arrays(per_class, classes, (28, 28) if channels == 1 else (32, 32, 3))
    assert arrays["x_train"].shape[1:] == (*expected["x_train"].shape[1:3], channels)
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key].reshape(value.shape), value)


def test_cifar_folder_it_unpacks_to(tmp_path):
    import tarfile

    with tarfile.open(write_cifar_archive(tmp_path / "c.tar.gz")) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    from_tar = read_local_file(tmp_path / "c.tar.gz", "cifar10")
    for folder in (tmp_path / "unpacked", tmp_path / "unpacked" / "cifar-10-batches-py"):
        from_folder = read_local_file(folder, "cifar10")
        np.testing.assert_array_equal(from_folder["x_test"], from_tar["x_test"])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("mnist", lambda p: (p.write_text("not a zip"), p)[1], "is not a Keras mnist.npz"),
        ("mnist", lambda p: (p.write_text("x,y\n1"), p)[1], r"no \.npz archive \(it starts"),
        (
            "mnist",
            lambda p: np.savez(p.with_suffix(".npz"), x_train=np.zeros(3)) or p.with_suffix(".npz"),
            r"lacks the arrays \['y_train', 'x_test', 'y_test'\]",
        ),
        ("cifar10", lambda p: write_mnist_npz(p.with_suffix(".npz")), "not a tar archive"),
        ("fashion_mnist", lambda p: p.mkdir() or p, "the folder lacks"),
        ("cifar10", lambda p: p.parent / "nowhere.tar.gz", "which does not exist"),
    ],
)
def test_a_local_file_of_the_wrong_format_is_named(tmp_path, name, make, message):
    path = make(tmp_path / "file")
    with pytest.raises(KerasDatasetError, match=message) as error:
        read_local_file(path, name)
    assert "allow_pickle" not in str(error.value)


def test_labels_out_of_range_and_unpicklable_code_are_refused(tmp_path):
    arrays = keras_arrays()
    arrays["y_test"][0] = 10
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(KerasDatasetError, match=r"test labels must lie in 0\.\.9"):
        read_local_file(tmp_path / "bad.npz", "mnist")

    import io
    import pickle
    import tarfile

    evil = pickle.dumps({b"data": print})  # a global the reader must not resolve
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        for member in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(evil)
            tar.addfile(info, io.BytesIO(evil))
    with pytest.raises(KerasDatasetError, match=r"refusing to unpickle builtins\.print"):
        read_local_file(tmp_path / "evil.tar.gz", "cifar10")


def test_unknown_dataset_and_source_type_are_named():
    with pytest.raises(ValidationError, match="one of mnist, fashion_mnist, cifar10, cifar100"):
        SourceParams(type="keras_datasets", name="imagenet")
    with pytest.raises(ValidationError, match="'kaggle_names', 'class_folders' or 'keras_"):
        SourceParams(type="folders")


def test_without_a_local_file_keras_downloads(monkeypatch):
    arrays = keras_arrays()
    monkeypatch.setattr(
        keras.datasets.mnist,
        "load_data",
        lambda: ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])),
    )
    record = fetch_keras_dataset(DownloadParams(), "mnist")
    assert record == {
        "dataset": "mnist",
        "path": None,
        "sha256": None,
        "source": "keras.datasets.mnist",
        "train": 60,
        "test": 20,
    }

    def offline():
        raise OSError("Network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(KerasDatasetError, match=r"could not download mnist.*download\.local_path"):
        fetch_keras_dataset(DownloadParams(), "mnist")


def _mnist_params(path: Path, **split) -> dict:
    return {
        "mnist": {
            "source": {"type": "keras_datasets", "name": "mnist"},
            "download": {"local_path": str(path)},
            "extract": {"target_dir": "data/01_raw/mnist"},
            "split": {"ranges": None, "fractions": None, "seed": 7, "classes": None, **split},
            "decode": {"image_size": [28, 28]},
        }
    }


def _sets(namespace: str) -> dict[str, dict]:
    return {
        s: ImageSetDataset(f"data/05_model_input/{namespace}/{s}").load()
        for s in ("train", "validation", "test")
    }


@pytest.mark.parametrize(
    ("split", "counts"),
    [
        ({"fractions": {"train": 2 / 3, "validation": 1 / 3}}, (40, 20)),
        ({"ranges": {"train": [0, 3], "validation": [3, 5]}}, (30, 20)),
    ],
)
def test_namespaced_pipeline_keeps_the_own_test_set_and_one_channel(
    tmp_path, monkeypatch, split, counts
):
    path = write_mnist_npz(tmp_path / "mnist.npz")
    monkeypatch.chdir(tmp_path)
    run_data_pipeline(_mnist_params(path, **split), namespace="mnist")

    sets = _sets("mnist")
    assert [len(sets[s]["labels"]) for s in ("train", "validation", "test")] == [*counts, 20]
    assert sets["train"]["images"].shape[1:] == (28, 28, 1)
    np.testing.assert_array_equal(
        sets["test"]["images"][..., 0],
        keras_arrays()["x_test"][np.argsort(keras_arrays()["y_test"], kind="stable")],
    )
    for image_set in sets.values():  # stratified: every class in every subset, equally
        assert np.bincount(image_set["labels"]).tolist() == [len(image_set["labels"]) // 10] * 10
    files = [f for s in sets.values() for f in s["files"]]
    assert len(files) == len(set(files)) == sum(counts) + 20  # no image in two subsets
    assert all("x_test.npy#" in f for f in sets["test"]["files"])
    assert sets["train"]["classes"] == [str(d) for d in range(10)]
    assert (
        json.loads(Path("data/02_intermediate/mnist/class_names.json").read_text())
        == sets["train"]["classes"]
    )
    report = json.loads(Path("data/08_reporting/mnist/data_quality.json").read_text())
    assert report["decoded"] == sum(counts) + 20
    # Nothing was written where xception_cats keeps its data.
    assert not Path("data/05_model_input/train").exists()
    assert not Path("data/02_intermediate/split_manifest.csv").exists()


def test_fraction_split_is_reproducible_from_the_seed(tmp_path, monkeypatch):
    path = write_mnist_npz(tmp_path / "mnist.npz", per_class=(20, 1))
    monkeypatch.chdir(tmp_path)
    manifests = []
    for seed in (7, 7, 8):
        params = _mnist_params(path, fractions={"train": 0.75, "validation": 0.25})
        params["mnist"]["split"]["seed"] = seed
        run_data_pipeline(params, namespace="mnist")
        manifests.append(pd.read_csv("data/02_intermediate/mnist/split_manifest.csv"))
    assert manifests[0].equals(manifests[1])
    assert not manifests[0].equals(manifests[2])


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"fractions": {"train": 0.8, "validation": 0.3}}, "add up to 1.1, not 1"),
        ({"fractions": {"train": 0.7, "test": 0.2}}, "its own test set is the test split"),
        (
            {"ranges": {"train": [0, 5], "validation": [5, 7]}},
            r"10 source images are missing .* validation/0: 6;.*0: 0–5",
        ),
        ({}, "xactly one of"),  # the parameters' model says it, before split_mode would
        ({"fractions": {"train": 0.5, "validation": 0.5}, "classes": ["a", "b"]}, "needs 10"),
    ],
)
def test_bad_split_parameters_say_what_to_fix(tmp_path, monkeypatch, split, message):
    path = write_mnist_npz(tmp_path / "mnist.npz")
    monkeypatch.chdir(tmp_path)
    with pytest.raises((SplitError, ValidationError, ParameterValidationError), match=message):
        run_data_pipeline(_mnist_params(path, **split), namespace="mnist")
    assert not Path("data/05_model_input/mnist").exists()  # nothing half-written


def test_images_are_resized_when_the_decode_size_differs(tmp_path, monkeypatch):
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.chdir(tmp_path)
    params = _mnist_params(path, fractions={"train": 0.5, "validation": 0.5})
    params["mnist"]["source"]["name"] = "cifar10"
    params["mnist"]["decode"]["image_size"] = [16, 24]
    run_data_pipeline(params, namespace="mnist")
    sets = _sets("mnist")
    assert sets["test"]["images"].shape == (20, 16, 24, 3)
    assert sets["test"]["classes"][:3] == ["airplane", "automobile", "bird"]


def test_the_parameters_name_every_dataset_the_source_reads():
    from image_classifiers.core.data.keras_datasets import CLASS_NAMES
    from image_classifiers.core.params import KERAS_DATASETS

    assert tuple(CLASS_NAMES) == KERAS_DATASETS


def write_bomb(tmp_path: Path, name: str) -> Path:
    """``name``'s local file whose first member unpacks to 2 MB of zeros (a few KB packed)."""
    import gzip
    import io
    import tarfile
    import zipfile

    big = bytes(2 * MEGABYTE)
    if name == "mnist":
        path = tmp_path / "bomb.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("x_train.npy", big)
        return path
    if name == "cifar10":
        path = tmp_path / "bomb.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
            info.size = len(big)
            tar.addfile(info, io.BytesIO(big))
        return path
    folder = tmp_path / "fashion"
    folder.mkdir()
    for file in _FASHION_FILES.values():
        (folder / file).write_bytes(gzip.compress(big))
    return folder


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fashion_mnist"])
def test_a_member_over_the_archive_limits_is_never_decompressed(tmp_path, name):
    path = write_bomb(tmp_path, name)
    limits = ArchiveLimits(max_member_mb=1)
    with pytest.raises(KerasDatasetError, match=r"extract\.archive_limits\.max_member_mb"):
        read_local_file(path, name, limits)
    # The extract step reads with extract.archive_limits, and writes nothing.
    target = tmp_path / "arrays"
    extract = ExtractParams(target_dir=str(target), archive_limits=limits)
    with pytest.raises(KerasDatasetError, match="max_member_mb"):
        extract_keras_dataset({"dataset": name, "path": str(path), "sha256": None}, extract)
    assert not target.exists()
