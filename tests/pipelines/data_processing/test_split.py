"""The split node: index ranges per class, byte copies, clear errors, untouched old output."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from image_classifiers.core.data.split import (
    SplitError,
    assign,
    compact_ranges,
    split_kaggle_names,
)
from image_classifiers.core.params import SplitParams

RANGES = {"train": [0, 4], "validation": [4, 6], "test": [6, 9]}


def _extracted(tmp_path: Path, classes=("cat", "dog"), indices=range(10)) -> dict:
    folder = tmp_path / "raw" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    for label in classes:
        for n in indices:
            (folder / f"{label}.{n}.jpg").write_bytes(f"{label} {n}".encode())
    (folder / "readme.txt").write_text("ignored")
    return {"path": str(tmp_path / "raw")}


def _params(tmp_path: Path, classes=("cat", "dog"), ranges=None, **other) -> SplitParams:
    return SplitParams(
        classes=list(classes),
        ranges=ranges or RANGES,
        target_dir=str(tmp_path / "small"),
        **other,
    )


def split_images(extracted: dict, split: SplitParams):
    manifest, classes = split_kaggle_names(extracted, split)
    assert classes == split.classes
    return manifest


def test_copies_each_range_per_class(tmp_path):
    manifest = split_images(_extracted(tmp_path), _params(tmp_path))

    small = tmp_path / "small"
    for subset, (start, stop) in RANGES.items():
        for label in ("cat", "dog"):
            names = sorted(p.name for p in (small / subset / label).iterdir())
            assert names == sorted(f"{label}.{n}.jpg" for n in range(start, stop))
    assert (small / "test/dog/dog.8.jpg").read_bytes() == b"dog 8"  # bytes, not re-encoded
    assert list(manifest.columns) == ["file", "class", "subset"]
    assert len(manifest) == 2 * 9
    assert manifest["file"].is_unique
    assert manifest.iloc[0].to_dict() == {
        "file": (small / "train/cat/cat.0.jpg").as_posix(),
        "class": "cat",
        "subset": "train",
    }
    assert all(Path(f).is_file() for f in manifest["file"])
    assert manifest.groupby("subset").size().to_dict() == {"test": 6, "train": 8, "validation": 4}


def test_split_is_deterministic_and_replaces_old_output(tmp_path):
    extracted = _extracted(tmp_path)
    first = split_images(extracted, _params(tmp_path))
    stale = tmp_path / "small" / "train" / "cat" / "cat.99.jpg"
    stale.write_bytes(b"from an older split")
    second = split_images(extracted, _params(tmp_path))
    assert first.equals(second)
    assert not stale.exists()


def test_more_than_two_classes(tmp_path):
    classes = ("cat", "dog", "fox")
    manifest = split_images(_extracted(tmp_path, classes), _params(tmp_path, classes))
    assert sorted(manifest["class"].unique()) == list(classes)
    assert len(list((tmp_path / "small" / "validation" / "fox").iterdir())) == 2


def test_overlapping_ranges_are_refused(tmp_path):
    ranges = {"train": [0, 5], "validation": [4, 6], "test": [6, 9]}
    with pytest.raises(ValidationError, match="ranges") as error:
        _params(tmp_path, ranges=ranges)
    assert "train [0, 5) and validation [4, 6) share 1 indices" in str(error.value)


def test_missing_files_are_listed_in_one_error(tmp_path):
    extracted = _extracted(tmp_path, indices=[0, 1, 2, 3, 5, 8])
    split_images(_extracted(tmp_path / "old"), _params(tmp_path))  # an earlier good split
    before = sorted(p.name for p in (tmp_path / "small").rglob("*"))
    with pytest.raises(SplitError) as error:
        split_images(extracted, _params(tmp_path))
    message = str(error.value)
    assert message.startswith("6 source images are missing")
    assert "validation/cat: 4; validation/dog: 4; test/cat: 6–7; test/dog: 6–7" in message
    assert "cat: 0–3, 5, 8" in message
    assert sorted(p.name for p in (tmp_path / "small").rglob("*")) == before


@pytest.mark.parametrize(
    ("ranges", "match"),
    [
        ({"train": [5, 5]}, "start must be below stop"),
        ({"train": [-1, 3]}, "greater than or equal to 0"),
        ({"train": [0, 2.5]}, "valid integer"),
        ({"train": "0-"}, "give .start, stop. or start-stop"),
        ({}, "give at least one subset"),
    ],
)
def test_bad_ranges(tmp_path, ranges, match):
    with pytest.raises(ValidationError, match=match):
        SplitParams(classes=["cat", "dog"], ranges=ranges)


@pytest.mark.parametrize("classes", [["cat"], ["cat", "cat"], "cat", ["cat", "a/b"]])
def test_bad_classes(tmp_path, classes):
    with pytest.raises(ValidationError, match="classes"):
        SplitParams(classes=classes)
    with pytest.raises(SplitError, match=r"split\.classes must list the file-name prefixes"):
        split_images(_extracted(tmp_path), SplitParams(classes=None))


def test_two_files_for_one_index(tmp_path):
    extracted = _extracted(tmp_path)
    (tmp_path / "raw" / "train" / "cat.3.png").write_bytes(b"")
    with pytest.raises(SplitError, match="Two files for cat #3"):
        split_images(extracted, _params(tmp_path))


def test_missing_extraction_folder(tmp_path):
    with pytest.raises(SplitError, match="run the extract step"):
        split_images({"path": str(tmp_path / "nowhere")}, _params(tmp_path))


def test_compact_ranges():
    assert compact_ranges([9, 1, 2, 3, 7, 10]) == "1–3, 7, 9–10"
    assert compact_ranges([]) == ""


def test_kaggle_names_split_by_stratified_fractions(tmp_path):
    params = {"classes": ["cat", "dog"], "target_dir": str(tmp_path / "small")}
    params["fractions"] = {"train": 0.6, "test": 0.4}
    manifest = split_images(_extracted(tmp_path), SplitParams(**params, seed=5))

    counts = manifest.groupby(["subset", "class"]).size().to_dict()
    assert counts == {
        ("test", "cat"): 4,
        ("test", "dog"): 4,
        ("train", "cat"): 6,
        ("train", "dog"): 6,
    }
    assert manifest["file"].map(lambda f: Path(f).name).is_unique  # no file in two subsets
    again = split_images(_extracted(tmp_path), SplitParams(**params, seed=5))
    assert again.equals(manifest)
    other = split_images(_extracted(tmp_path), SplitParams(**params, seed=6))
    assert not other.equals(manifest)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.5, "holdout": 0.5}, r"names subsets \['holdout'\]"),
    ],
)
def test_bad_fractions_say_what_to_fix(tmp_path, fractions, message):
    target = str(tmp_path / "small")
    split = SplitParams(classes=["cat", "dog"], fractions=fractions, target_dir=target)
    with pytest.raises(SplitError, match=message):
        split_images(_extracted(tmp_path), split)
    assert not (tmp_path / "small").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ranges": RANGES, "fractions": {"train": 0.5, "test": 0.5}}, "exactly one of"),
        ({"fractions": {"train": 1.5}}, "less than or equal to 1"),
        (
            {"fractions": {"train": 0.5, "test": 0.4}},
            r"add up to 0.9, not 1 \(train 0.5, test 0.4\)",
        ),
    ],
)
def test_fraction_parameters_are_checked_before_any_node(change, message):
    with pytest.raises(ValidationError, match=message):
        SplitParams(classes=["cat", "dog"], **change)


def test_a_class_left_without_test_images_is_warned_of_before_training(caplog):
    members = {"cat": dict(enumerate(range(40))), "dog": dict(enumerate(range(40)))}
    members["fox"] = {0: 0, 1: 1, 2: 2}
    split = SplitParams(fractions={"train": 0.7, "validation": 0.15, "test": 0.15})

    plan = assign(members, split, "'here'")

    assert {c for s, c, _ in plan if s == "test"} == {"cat", "dog"}
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "leave classes fox (3 images) without test images" in warning
    assert "split.fractions.test" in warning
