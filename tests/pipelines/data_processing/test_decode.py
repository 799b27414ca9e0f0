"""The decode nodes and the data-quality report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from image_classifiers.core.images import read_rows
from image_classifiers.core.params import DecodeParams
from image_classifiers.datasets import ImageSetDataset
from image_classifiers.pipelines.data_processing.nodes import (
    DecodeError,
    decode_split,
    make_split_decoder,
    report_data_quality,
)

DECODE = DecodeParams(image_size=[12, 16], on_bad_image="skip", workers=2, log_every=2)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    # decode.scratch_dir (default data/05_model_input) is relative to the working directory.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def manifest(tmp_path, odd_images) -> pd.DataFrame:
    """Train: the six odd images; validation: two plain ones."""
    rows = []
    members = {**odd_images["good"], **odd_images["bad"]}
    plain = {"train/cat.0.jpg": members["train/cat.16.jpg"]}
    plain["train/dog.0.jpg"] = members["train/dog.16.jpg"]
    for subset, group in (("train", members), ("validation", plain)):
        for member, data in sorted(group.items()):
            name = Path(member).name
            label = name.split(".")[0]
            path = tmp_path / subset / label / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows.append((str(path), label, subset))
    return pd.DataFrame(rows, columns=["file", "class", "subset"])


def test_skip_leaves_bad_images_out_and_reports_them(manifest, caplog):
    caplog.set_level(logging.INFO)
    image_set, quality = decode_split(manifest, DECODE, ["cat", "dog"], "train")

    good = sorted(Path(f).name for f in image_set["files"])
    assert good == ["cat.16.jpg", "cat.17.jpg", "dog.16.jpg"]
    assert image_set["images"].shape == (3, 12, 16, 3)
    assert image_set["images"].dtype == np.uint8
    expected_labels = [0 if Path(f).name.startswith("cat") else 1 for f in image_set["files"]]
    assert image_set["labels"].tolist() == expected_labels
    assert image_set["labels"].dtype == np.int32
    assert image_set["classes"] == ["cat", "dog"]

    skipped = {Path(s["file"]).name: s["reason"] for s in quality["skipped"]}
    assert set(skipped) == {"dog.17.jpg", "cat.18.jpg", "dog.18.jpg"}
    assert "empty" in skipped["dog.17.jpg"]
    assert "truncated" in skipped["cat.18.jpg"]
    assert "not an image" in skipped["dog.18.jpg"]
    assert quality["images"] == 6 and quality["decoded"] == 3
    assert "Skipped unreadable train image" in caplog.text
    assert "train: 6/6 images" in caplog.text  # progress


def test_fail_names_every_bad_image(manifest):
    with pytest.raises(DecodeError) as error:
        decode_split(manifest, _with(on_bad_image="fail"), ["cat", "dog"], "train")
    message = str(error.value)
    assert message.startswith("3 train images cannot be decoded")
    for name in ("dog.17.jpg", "cat.18.jpg", "dog.18.jpg"):
        assert name in message
    assert "on_bad_image=skip" in message


def _with(**changes) -> DecodeParams:
    return DecodeParams(**{**DECODE.model_dump(), **changes})


@pytest.mark.parametrize("value", ["ignore", "", None, True])
def test_bad_on_bad_image_value(value):
    with pytest.raises(ValidationError, match="on_bad_image\n  Input should be 'skip' or 'fail'"):
        _with(on_bad_image=value)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"image_size": [0, 10]}, "image_size"),
        ({"resample": "smooth"}, "resample"),
        ({"workers": -1}, "workers"),
    ],
)
def test_other_bad_decode_parameters(override, match):
    with pytest.raises(ValidationError, match=match):
        _with(**override)


def test_unknown_subset_and_class(manifest):
    with pytest.raises(DecodeError, match="no 'test' images"):
        decode_split(manifest, DECODE, ["cat", "dog"], "test")
    with pytest.raises(DecodeError, match=r"classes \['dog'\] that are not in"):
        decode_split(manifest, DECODE, ["cat", "fox"], "validation")


def test_split_decoder_is_a_named_node_function(manifest):
    decode_validation = make_split_decoder("validation")
    assert decode_validation.__name__ == "decode_validation_images"
    image_set, quality = decode_validation(manifest, DECODE, ["cat", "dog"])
    assert quality["subset"] == "validation"
    assert image_set["labels"].tolist() == [0, 1]


def test_report_merges_the_splits(manifest):
    subsets = ("train", "validation")
    qualities = [decode_split(manifest, DECODE, ["cat", "dog"], s)[1] for s in subsets]
    report = report_data_quality(DECODE, {}, *qualities)
    assert report["image_size"] == [12, 16]
    assert report["on_bad_image"] == "skip"
    assert (report["images"], report["decoded"], report["skipped_count"]) == (8, 5, 3)
    assert report["splits"]["validation"] == {"images": 2, "decoded": 2, "skipped": []}
    assert {s["subset"] for s in report["skipped"]} == {"train"}
    assert len(report["skipped"]) == 3


def test_chunked_decoding_streams_to_a_staged_file_that_saving_moves(manifest, tmp_path):
    whole, _ = decode_split(manifest, DECODE, ["cat", "dog"], "train")
    scratch = tmp_path / "scratch"
    chunked, quality = decode_split(
        manifest, _with(chunk_size=2, scratch_dir=str(scratch)), ["cat", "dog"], "train"
    )
    # Chunks of 2 with skipped files in them: the same images, labels and files.
    assert isinstance(chunked["images"], np.memmap) and chunked["images"].shape == (3, 12, 16, 3)
    np.testing.assert_array_equal(chunked["images"], whole["images"])
    assert chunked["files"] == whole["files"] and quality["decoded"] == 3
    (staged,) = scratch.glob(".staged-images-*.npy")

    ImageSetDataset(str(tmp_path / "out" / "train")).save(chunked)
    assert not staged.exists()  # moved, not copied
    loaded = ImageSetDataset(str(tmp_path / "out" / "train")).load()
    np.testing.assert_array_equal(loaded["images"], whole["images"])
    assert loaded["labels"].tolist() == chunked["labels"].tolist()


def test_a_slice_of_a_staged_set_is_copied_not_moved(manifest, tmp_path):
    image_set, _ = decode_split(manifest, DECODE, ["cat", "dog"], "train")
    first = {**image_set, "images": image_set["images"][:2], "labels": image_set["labels"][:2]}
    first["files"] = image_set["files"][:2]
    ImageSetDataset(str(tmp_path / "first")).save(first)
    assert ImageSetDataset(str(tmp_path / "first")).load()["images"].shape[0] == 2
    ImageSetDataset(str(tmp_path / "all")).save(image_set)  # the staged file is still whole
    assert ImageSetDataset(str(tmp_path / "all")).load()["images"].shape[0] == 3
    assert not list((tmp_path / "data" / "05_model_input").glob(".staged-images-*"))


def test_a_failing_decode_leaves_no_staged_file(manifest, tmp_path):
    with pytest.raises(DecodeError):
        decode_split(manifest, _with(on_bad_image="fail"), ["cat", "dog"], "train")
    assert not list((tmp_path / "data" / "05_model_input").glob(".staged-images-*"))


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5, True])
def test_bad_chunk_size_is_rejected(chunk_size):
    with pytest.raises(ValidationError, match=r"chunk_size\n  Input should be"):
        _with(chunk_size=chunk_size)


def test_read_rows_reads_rows_and_slices_of_a_saved_set(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (50, 4, 5, 3), dtype=np.uint8)
    image_set = {"images": pixels, "labels": np.zeros(50, np.int32), "classes": ["a", "b"]}
    ImageSetDataset(str(tmp_path / "set")).save({**image_set, "files": list("x" * 50)})
    mapped = ImageSetDataset(str(tmp_path / "set")).load()["images"]
    for rows in (np.array([0, 1, 2, 7, 8, 49]), np.array([3]), slice(10, 20), slice(45, 60)):
        read = read_rows(mapped, rows)
        assert not isinstance(read, np.memmap)
        np.testing.assert_array_equal(read, pixels[rows])
    # A view of the map is not the whole file: indexed as usual.
    np.testing.assert_array_equal(read_rows(mapped[5:], slice(0, 3)), pixels[5:8])
    np.testing.assert_array_equal(read_rows(pixels, np.array([4, 2])), pixels[[4, 2]])
