"""Atomic saves: a concurrent reader never sees part of a file, a failed save leaves the old,
a second writer is refused, a killed writer's leftovers go at the next write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, DatasetError

from image_classifiers.core.data.extract import HOST, atomic_dir
from image_classifiers.datasets.atomic import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    atomic_folder,
    published_folder,
)
from image_classifiers.datasets.image_set_dataset import ImageSetDataset, staged_images_file

INF = float("inf")

PROJECT = Path(__file__).resolve().parents[1]


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"file": [f"cat.{i}.jpg" for i in range(rows)], "split": "train"})


def test_a_concurrent_reader_sees_a_whole_file_every_time(tmp_path):
    path = tmp_path / "split_manifest.csv"
    dataset = AtomicCSVDataset(filepath=str(path), save_args={"index": False})
    sizes = (20_000, 30_000)  # a few hundred kB: each write takes many write() calls
    dataset.save(frame(sizes[0]))
    seen, failures, done = [], [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(len(pd.read_csv(path)))
            except Exception as error:  # a half-written file: empty, or a torn last line
                failures.append(repr(error))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            dataset.save(frame(sizes[i % 2]))
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert seen and set(seen) <= set(sizes)
    assert [p.name for p in tmp_path.iterdir()] == ["split_manifest.csv"]  # no temp left


def test_a_failed_save_leaves_the_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "report.json"
    dataset = AtomicJSONDataset(filepath=str(path))
    dataset.save({"run": 1})
    with pytest.raises(DatasetError):
        dataset.save({"run": 2, "oops": object()})  # json.dump fails half-way through
    assert json.loads(path.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_figures_single_and_folders_are_replaced(tmp_path):
    figure = plt.figure()
    single = AtomicMatplotlibDataset(filepath=str(tmp_path / "plot.png"))
    single.save(figure)
    single.save(figure)
    folder = AtomicMatplotlibDataset(filepath=str(tmp_path / "plots"))
    folder.save([figure, figure])
    folder.save([figure])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "plots"]
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["0.png"]


def test_the_catalog_outputs_are_atomic_also_inside_mlflow_datasets():
    plain = {"pandas.CSVDataset", "json.JSONDataset", "matplotlib.MatplotlibDataset"}
    for catalog in sorted((PROJECT / "conf").rglob("catalog*.yml")):
        entries = yaml.safe_load(catalog.read_text()) or {}
        types = set()
        for entry in entries.values():
            if isinstance(entry, dict):  # MlflowArtifactDataset wraps the file's dataset
                inner = entry.get("dataset")
                types |= {
                    entry.get("type"),
                    inner.get("type") if isinstance(inner, dict) else inner,
                }
        assert not types & plain, f"{catalog.name}: use the Atomic* datasets"


def test_json_is_strict_nan_and_infinity_become_null(tmp_path):
    path = tmp_path / "metrics.json"
    AtomicJSONDataset(filepath=str(path)).save({"recall": {"cat": float("nan")}, "x": [1.5, INF]})

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "recall": {"cat": None},
        "x": [1.5, None],
    }


def image_set(n: int) -> dict:
    images = np.full((n, 2, 2, 3), n, dtype=np.uint8)
    return {"images": images, "labels": np.zeros(n), "classes": ["a"], "files": ["f"] * n}


def test_an_image_set_save_switches_versions_under_a_concurrent_reader(tmp_path):
    dataset = ImageSetDataset(str(tmp_path / "train"))
    dataset.save(image_set(3))
    seen, failures, done = [], [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                loaded = dataset.load()
                seen.append((len(loaded["images"]), len(loaded["labels"])))
            except Exception as error:  # the gap between removing the old and renaming the new
                failures.append(repr(error))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            dataset.save(image_set(3 + 2 * (i % 2)))
            time.sleep(0.02)  # saves are far apart in a run; a load may span one switch
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert seen and set(seen) <= {(3, 3), (5, 5)}
    # The link, its lock and the current version; no earlier version or temporary folder.
    current = os.readlink(tmp_path / "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".train.lock", current, "train"])


HOLD = """import sys, time
from image_classifiers.datasets.atomic import atomic_folder
with atomic_folder(sys.argv[1]) as tmp:
    (tmp / "meta.json").write_text("{}")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_killed_writer_leaves_nothing(tmp_path):
    dataset = ImageSetDataset(str(tmp_path / "train"))
    dataset.save(image_set(3))
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "train")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline() == "writing\n"
        with pytest.raises(DatasetError, match=f"Another process \\(pid {first.pid}\\)"):
            dataset.save(image_set(5))
        assert len(dataset.load()["images"]) == 3  # readers keep reading the current version
    finally:
        first.kill()  # kill -9 in the middle of its save
        first.wait()
    assert len(list(tmp_path.glob(".train.v-*"))) == 2  # the current one and the killed one's
    dataset.save(image_set(5))  # the lock went with its process; its folder goes now
    assert len(dataset.load()["images"]) == 5
    assert len(list(tmp_path.glob(".train.v-*"))) == 1


def test_a_set_decoded_from_another_manifest_is_refused(tmp_path):
    manifest = tmp_path / "split_manifest.csv"
    manifest.write_text("file,class,subset\na.jpg,a,train\n")
    dataset = ImageSetDataset(str(tmp_path / "train"), manifest=str(manifest))
    dataset.save(image_set(3))
    assert "manifest_sha256" not in dataset.load()
    manifest.write_text("file,class,subset\nb.jpg,a,train\n")  # a new split, not decoded yet
    with pytest.raises(DatasetError, match="not decoded from the split manifest"):
        dataset.load()
    assert len(ImageSetDataset(str(tmp_path / "train")).load()["images"]) == 3  # not asked to


def test_files_of_dead_processes_are_removed_at_the_next_write(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".staged-images-{HOST}-{gone.pid}-x.npy"
    alive = tmp_path / f".staged-images-{HOST}-{os.getpid()}-y.npy"
    other_host = tmp_path / f".staged-images-elsewhere-{gone.pid}-z.npy"
    stale_temp = tmp_path / f".report.tmp-{HOST}-{gone.pid}-abc.json"
    for path in (dead, alive, other_host, stale_temp):
        path.write_bytes(b"")
    (tmp_path / f".images.tmp-{HOST}-{gone.pid}-abc").mkdir()  # an extraction's
    staged_images_file(tmp_path).unlink()
    AtomicJSONDataset(filepath=str(tmp_path / "report.json")).save({})
    with atomic_dir(tmp_path / "images"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, other_host.name, "report.json", "images"]
    )


def test_the_catalog_gives_each_decoded_set_its_split_manifest():
    config = yaml.safe_load((PROJECT / "conf" / "base" / "catalog.yml").read_text())
    resolver = DataCatalog.from_config(config).config_resolver
    for name, manifest in (("train_set", ""), ("mnist.test_set", "mnist/")):
        expected = f"data/02_intermediate/{manifest}split_manifest.csv"
        assert resolver.resolve_pattern(name)["manifest"] == expected


def test_a_version_folder_is_named_by_the_link_it_is_published_as(tmp_path):
    target = tmp_path / "05_model_input" / "train"
    with atomic_folder(target) as version:
        (version / "meta.json").write_text("{}")
    published = target.resolve()
    assert published != target and published.name.startswith(".train.v-")
    assert published_folder(published) == target
    assert published_folder(target) == target
    for other in (".train", ".v-1", ".train.v-"):  # no version folder: left as is
        assert published_folder(tmp_path / other) == tmp_path / other
