"""The class_folders source: a folder or (nested) zip of one folder per class, bad input."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from data_runs import run_data_pipeline
from fixture_archives import jpeg_bytes
from PIL import Image

from image_classifiers.core.data.inputs import LINK_OUTSIDE, LINK_TO_FOLDER, NOT_REGULAR
from image_classifiers.core.data.split import (
    SplitError,
    find_class_folders,
    split_class_folders,
)
from image_classifiers.core.params import DownloadParams, SourceParams, SplitParams
from image_classifiers.datasets import ImageSetDataset
from image_classifiers.pipelines.data_processing.nodes import (
    SourceError,
    download_data,
    split_data,
)

FRACTIONS = {"train": 0.5, "validation": 0.25, "test": 0.25}


def _tree(per_class: int = 8, classes=("Cat", "Dog"), root: str = "PetImages") -> dict[str, bytes]:
    files = {}
    for c, name in enumerate(classes):
        for n in range(per_class):
            files[f"{root}/{name}/{n}.jpg"] = jpeg_bytes(100 * c + n)
    files[f"{root}/Cat/Thumbs.db"] = b"\x00windows thumbnail cache"
    files[f"{root}/Dog/.DS_Store"] = b"\x00mac"
    files[f"{root}/readme.txt"] = b"not an image"
    return files


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _zip_bytes(files: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder.rstrip("/") + "/"), b"")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _params(local_path: Path, **split) -> dict:
    return {
        "image_folders": {
            "source": {"type": "class_folders"},
            "download": {"local_path": str(local_path)},
            "extract": {"target_dir": "data/01_raw/image_folders", "inner_archive": None},
            "split": {
                "classes": None,
                "ranges": None,
                "fractions": FRACTIONS,
                "seed": 3,
                "target_dir": "data/02_intermediate/image_folders",
                **split,
            },
            "decode": {"image_size": [16, 16], "workers": 1},
        }
    }


def _sets() -> dict[str, dict]:
    return {
        s: ImageSetDataset(f"data/05_model_input/image_folders/{s}").load()
        for s in ("train", "validation", "test")
    }


@pytest.mark.parametrize("packing", ["folder", "zip", "nested zip"])
def test_folder_zip_and_nested_zip_give_the_same_split(tmp_path, monkeypatch, packing):
    files = _tree()
    if packing == "folder":
        local = _write_folder(tmp_path / "mine", files)
    else:
        data = _zip_bytes(files)
        if packing == "nested zip":
            data = _zip_bytes({"PetImages.zip": data, "__MACOSX/._PetImages.zip": b"x"})
        local = tmp_path / "PetImages.zip"
        local.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    run_data_pipeline(_params(local), namespace="image_folders")

    sets = _sets()
    assert [len(sets[s]["labels"]) for s in FRACTIONS] == [8, 4, 4]
    assert sets["train"]["classes"] == ["Cat", "Dog"]
    for image_set in sets.values():  # stratified per class
        assert sorted(image_set["labels"].tolist()) == [0] * (len(image_set["labels"]) // 2) + [
            1
        ] * (len(image_set["labels"]) // 2)
    names = [Path(f).name for s in sets.values() for f in s["files"]]
    assert len(names) == 16  # Thumbs.db, .DS_Store and readme.txt ignored
    assert len(set(names)) < 16  # 0.jpg ... 7.jpg in both classes: paths, not names, differ
    files_all = [f for s in sets.values() for f in s["files"]]
    assert len(set(files_all)) == 16  # no image in two subsets
    picked = {Path(f).name for f in sets["test"]["files"]}
    if packing == "folder":
        test_folder_zip_and_nested_zip_give_the_same_split.picked = picked  # type: ignore[attr-defined]
    assert picked == getattr(test_folder_zip_and_nested_zip_give_the_same_split, "picked", picked)


def test_ranges_by_position_and_listed_classes_in_their_order(tmp_path, monkeypatch):
    local = _write_folder(tmp_path / "mine", _tree(classes=("Cat", "Dog", "Fox")))
    monkeypatch.chdir(tmp_path)
    split = {"fractions": None, "ranges": {"train": [0, 4], "validation": [4, 6], "test": [6, 8]}}
    run_data_pipeline(_params(local, classes=["Fox", "Cat"], **split), namespace="image_folders")

    sets = _sets()
    assert sets["train"]["classes"] == ["Fox", "Cat"]
    assert [Path(f).name for f in sets["test"]["files"]] == ["6.jpg", "7.jpg"] * 2
    assert sets["test"]["labels"].tolist() == [0, 0, 1, 1]
    assert json.loads(Path("data/02_intermediate/image_folders/class_names.json").read_text()) == [
        "Fox",
        "Cat",
    ]


def test_mixed_modes_sizes_and_unreadable_files_are_decoded_or_reported(tmp_path, monkeypatch):
    files = _tree()
    truncated = jpeg_bytes(5)
    files.update(
        {
            "PetImages/Cat/gray.jpg": jpeg_bytes(1, size=(50, 20), mode="L"),
            "PetImages/Cat/cmyk.jpg": jpeg_bytes(2, mode="CMYK"),
            "PetImages/Dog/sub/big.jpg": jpeg_bytes(3, size=(120, 90)),
            "PetImages/Dog/empty.jpg": b"",
            "PetImages/Dog/truncated.jpg": truncated[: len(truncated) // 2],
        }
    )
    import numpy as np
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(png, format="PNG")
    files["PetImages/Cat/really_a.png.jpg"] = png.getvalue()
    local = _write_folder(tmp_path / "mine", files)
    monkeypatch.chdir(tmp_path)
    run_data_pipeline(_params(local), namespace="image_folders")

    report = json.loads(Path("data/08_reporting/image_folders/data_quality.json").read_text())
    assert report["images"] == 8 + 8 + 6
    assert sorted(Path(s["file"]).name for s in report["skipped"]) == ["empty.jpg", "truncated.jpg"]
    assert report["decoded"] == 20
    assert all(s["images"].shape[1:] == (16, 16, 3) for s in _sets().values())


@pytest.mark.parametrize(
    ("files", "folders", "message"),
    [
        ({"PetImages/Cat/0.jpg": b"x", "PetImages/Cat/1.jpg": b"x"}, (), "only one class folder"),
        (
            {"PetImages/Cat/0.jpg": b"x", "PetImages/Dog/Thumbs.db": b"x"},
            ("PetImages/Bird",),
            r"class folders \['Bird'\] in .* hold no image files",
        ),
        ({"a.jpg": b"x", "Cat/0.jpg": b"x", "Dog/0.jpg": b"x"}, (), "lie directly in"),
    ],
)
def test_one_class_or_an_empty_class_folder_say_what_to_fix(
    tmp_path, monkeypatch, files, folders, message
):
    local = tmp_path / "bad.zip"
    local.write_bytes(_zip_bytes(files, folders))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SplitError, match=message):
        run_data_pipeline(_params(local), namespace="image_folders")
    assert not Path("data/05_model_input").exists()


def test_listed_classes_must_exist(tmp_path):
    local = _write_folder(tmp_path / "mine", _tree())
    folder, members = find_class_folders(local, [".jpg"])
    assert folder == local / "PetImages"
    assert sorted(members) == ["Cat", "Dog"]
    with pytest.raises(SplitError, match=r"no folder for \['Cow'\]"):
        split_class_folders(
            {"path": str(local), "extensions": [".jpg"]},
            SplitParams(classes=["Cat", "Cow"], fractions=FRACTIONS, target_dir=str(tmp_path)),
        )


def test_a_class_left_without_test_images_is_named_before_training(tmp_path, caplog):
    local = _write_folder(tmp_path / "mine", {**_tree(), **_tree(1, ["Cow"])})
    extracted = {"path": str(local), "extensions": [".jpg"]}
    split = SplitParams(fractions=FRACTIONS, target_dir=str(tmp_path / "split"))
    split_data(extracted, split, SourceParams(type="class_folders"))
    assert "The test split has no images of classes ['Cow']" in caplog.text


def test_no_folder_given_says_which_parameter_to_set():
    with pytest.raises(SourceError, match=r"image_folders\.download\.local_path=/abs/path"):
        download_data(DownloadParams(gdrive_id=None), SourceParams(type="class_folders"))


def test_links_out_of_the_folder_and_named_pipes_are_reported_not_read(tmp_path, monkeypatch):
    secret = b"root:x:0:0:root:/root:/bin/bash"
    outside = _write_folder(tmp_path / "outside", {"passwd": secret, "cats/x.jpg": jpeg_bytes(9)})
    local = _write_folder(tmp_path / "mine", _tree())
    cat, dog = local / "PetImages" / "Cat", local / "PetImages" / "Dog"
    (cat / "passwd.jpg").symlink_to(outside / "passwd")
    (cat / "again.jpg").symlink_to(dog / "0.jpg")  # inside the folder: read
    (dog / "more").symlink_to(outside / "cats", target_is_directory=True)
    (local / "PetImages" / "Bird").symlink_to(outside / "cats", target_is_directory=True)
    os.mkfifo(dog / "pipe.jpg")
    # Predict reads .webp and .bmp files: so does training.
    Image.open(io.BytesIO(jpeg_bytes(7))).save(cat / "webp.webp")
    Image.open(io.BytesIO(jpeg_bytes(8))).save(dog / "bmp.bmp")
    monkeypatch.chdir(tmp_path)

    run_data_pipeline(_params(local), namespace="image_folders")

    report = json.loads(Path("data/08_reporting/image_folders/data_quality.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"] if s["subset"] is None}
    assert reasons == {
        "PetImages/Bird": LINK_TO_FOLDER,
        "PetImages/Cat/passwd.jpg": LINK_OUTSIDE,
        "PetImages/Dog/more": LINK_TO_FOLDER,
        "PetImages/Dog/pipe.jpg": NOT_REGULAR,
    }
    sets = _sets()
    assert sets["train"]["classes"] == ["Cat", "Dog"]  # no class from the linked folder
    names = sorted(Path(f).name for s in sets.values() for f in s["files"])
    assert len(names) == 8 + 2 + 8 + 1 and {"again.jpg", "webp.webp", "bmp.bmp"} <= set(names)
    written = [p for p in Path("data").rglob("*") if p.is_file()]
    assert written and not any(secret in p.read_bytes() for p in written)
