"""Atomic saves: a concurrent reader never sees part of a file, a failed save leaves the old."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from kedro.io import DatasetError

from image_classifiers.datasets.atomic import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
)

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
