"""The whole data_processing pipeline with the project's own catalog and parameters.

Runs Kedro's SequentialRunner on a catalog built from ``conf/base`` (with the data paths
relative to a temp folder) -- what ``kedro run --pipelines=data_processing`` does, without
a KedroSession loading every other pipeline and plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_runs import run_data_pipeline

from image_classifiers.datasets import ImageSetDataset
from image_classifiers.pipelines.data_processing.nodes import DecodeError

RANGES = {"train": [0, 8], "validation": [8, 12], "test": [12, 19]}


_run = run_data_pipeline


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())


@pytest.mark.slow
def test_archive_to_decoded_sets_and_report(
    tmp_path, monkeypatch, make_archive, odd_images, file_server
):
    archive = make_archive(
        indices=range(16), extra_members={**odd_images["good"], **odd_images["bad"]}
    )
    file_server.payload = archive.read_bytes()
    monkeypatch.chdir(tmp_path)
    params = {
        "download": {"url": file_server.url, "retries": 0},
        "split": {"ranges": RANGES},
        "decode": {"image_size": [16, 20], "workers": 2},
    }
    _run(params)

    small = tmp_path / "data/02_intermediate/cats_vs_dogs_small"
    for subset, (start, stop) in RANGES.items():
        for label in ("cat", "dog"):
            assert _count(small / subset / label) == stop - start
    assert (tmp_path / "data/01_raw/dogs-vs-cats.zip").read_bytes() == archive.read_bytes()

    sets = {s: ImageSetDataset(f"data/05_model_input/{s}").load() for s in RANGES}
    assert sets["train"]["images"].shape == (16, 16, 20, 3)
    assert sets["validation"]["labels"].tolist() == [0] * 4 + [1] * 4
    assert len(sets["test"]["files"]) == 14 - 3  # three unreadable test images left out
    assert sets["test"]["classes"] == ["cat", "dog"]

    report = json.loads((tmp_path / "data/08_reporting/data_quality.json").read_text())
    assert report["skipped_count"] == 3
    assert {Path(s["file"]).name for s in report["skipped"]} == {
        "dog.17.jpg",
        "cat.18.jpg",
        "dog.18.jpg",
    }
    assert report["splits"]["train"]["skipped"] == []

    # A second run fetches nothing; on_bad_image=fail then stops at the test split and
    # leaves the earlier, complete image sets as they were.
    _run(params)
    assert len(file_server.requests) == 1
    before = (tmp_path / "data/05_model_input/test/meta.json").read_bytes()
    with pytest.raises(DecodeError, match="3 test images cannot be decoded"):
        _run({**params, "decode": {**params["decode"], "on_bad_image": "fail"}})
    assert (tmp_path / "data/05_model_input/test/meta.json").read_bytes() == before
    assert len(file_server.requests) == 1
