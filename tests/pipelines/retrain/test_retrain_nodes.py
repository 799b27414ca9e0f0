"""Retraining nodes one by one: incoming files, the promotion rule, the pool, moving files."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError
from retrain_project import CLASSES, image_set, jpeg, pixels

from image_classifiers.pipelines.retrain.nodes import (
    archive_incoming,
    collect_incoming,
    decide_promotion,
    update_training_pool,
)
from image_classifiers.pipelines.retrain.pool import TrainingPoolDataset, empty_pool

RETRAIN = {"on_bad_image": "skip", "processed_dir": "unused"}


@pytest.fixture
def splits():
    return image_set(8, 1), image_set(4, 2), image_set(4, 3)


def collect(splits, source: Path, pool=None, **options):
    train, validation, test = splits
    retrain = {**RETRAIN, "incoming_dir": str(source), **options}
    return collect_incoming(train, validation, test, pool or empty_pool(), retrain)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- collect_incoming ----------------------------------------------------------------------
def test_classes_from_folders_or_kaggle_names(splits, tmp_path):
    write(tmp_path / "dog" / "a.jpg", jpeg(1, 1))
    write(tmp_path / "batch7" / "cat.12.jpg", jpeg(0, 2))
    write(tmp_path / "cat" / "b.png", jpeg(0, 3))  # a JPEG named .png is still read

    incoming = collect(splits, tmp_path)

    assert incoming["files"] == ["batch7/cat.12.jpg", "cat/b.png", "dog/a.jpg"]
    assert incoming["labels"].tolist() == [0, 0, 1]
    assert incoming["images"].shape == (3, 32, 32, 3)  # train_set's size
    assert incoming["classes"] == list(CLASSES)
    assert [s["path"] for s in incoming["sources"]] == [
        str(tmp_path / name) for name in incoming["files"]
    ]


def test_unusable_files_are_rejected_with_a_reason(splits, tmp_path):
    write(tmp_path / "bird" / "x.jpg", jpeg(0, 1))
    write(tmp_path / "cat" / "empty.jpg", b"")
    write(tmp_path / "dog" / "page.jpg", b"<html>Too many users</html>")
    write(tmp_path / "dog" / "ok.jpg", jpeg(1, 4))

    incoming = collect(splits, tmp_path)

    assert incoming["files"] == ["dog/ok.jpg"]
    reasons = {r["file"]: r["reason"] for r in incoming["rejected"]}
    assert "folder named after its class (cat, dog)" in reasons["bird/x.jpg"]
    assert "empty" in reasons["cat/empty.jpg"]
    assert "HTML" in reasons["dog/page.jpg"]
    with pytest.raises(ValueError, match="3 incoming files cannot be used"):
        collect(splits, tmp_path, on_bad_image="fail")


def test_known_files_and_fixed_split_pictures_are_not_added(splits, tmp_path):
    known = jpeg(1, 50)
    write(tmp_path / "dog" / "known.jpg", known)
    write(tmp_path / "dog" / "known-copy.jpg", known)
    write(tmp_path / "cat" / "twice-a.jpg", jpeg(0, 60))
    write(tmp_path / "cat" / "twice-b.jpg", jpeg(0, 60))
    # A lossless copy of a test image: the same picture, a different file.
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(splits[2]["images"][1]).save(buffer, format="PNG")
    write(tmp_path / "dog" / "from-test.png", buffer.getvalue())
    pool = {**pool_of(1, "r1"), "sha256": [hashlib.sha256(known).hexdigest()]}

    incoming = collect(splits, tmp_path, pool=pool)

    assert incoming["files"] == ["cat/twice-a.jpg"]  # the same file twice counts once
    reasons = {d["file"]: d["reason"] for d in incoming["duplicates"]}
    assert reasons == {
        "cat/twice-b.jpg": "already in the training pool",
        "dog/from-test.png": "the same picture is in test_set",
        "dog/known-copy.jpg": "already in the training pool",
        "dog/known.jpg": "already in the training pool",
    }


def test_missing_incoming_folder_means_nothing_new(splits, tmp_path):
    incoming = collect(splits, tmp_path / "nothing-here")
    assert incoming["files"] == [] and incoming["images"].shape == (0, 32, 32, 3)


def test_an_archive_is_read_and_moved_as_a_whole(splits, tmp_path):
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/a.jpg", jpeg(0, 1))
        z.writestr("dog/b.jpg", jpeg(1, 2))
        z.writestr("__MACOSX/dog/._b.jpg", b"junk")
    incoming = collect(splits, tmp_path / "unused", archive=str(archive))
    assert incoming["files"] == ["cat/a.jpg", "dog/b.jpg"]
    assert incoming["sources"] == [{"file": "delivery.zip", "path": str(archive)}]


# ---- decide_promotion ----------------------------------------------------------------------
RULE = {"metric": "test_accuracy", "min_improvement": 0.01, "min_score": 0.6}
NEW = {"files": ["x.jpg"]}
LOSS_RULE = {"metric": "test_loss", "greater_is_better": False, "min_score": 1}


@pytest.mark.parametrize(
    ("challenger", "champion", "rule", "action"),
    [
        (0.80, None, {}, "promote"),  # no champion: a good first model wins
        (0.55, None, {}, "keep"),  # ... but not a bad one
        (0.90, 0.85, {}, "promote"),
        (0.855, 0.85, {}, "keep"),  # better, but by less than the margin
        (0.85, 0.85, {"min_improvement": 0.0}, "keep"),  # ties keep the champion
        (
            0.30,
            0.40,
            {"metric": "test_loss", "greater_is_better": False, "min_score": 1},
            "promote",
        ),
        (0.40, 0.30, {"metric": "test_loss", "greater_is_better": False, "min_score": 1}, "keep"),
    ],
)
def test_promotion_rule(challenger, champion, rule, action):
    rule = {**RULE, **rule}
    metric = rule["metric"]
    champion_metrics = {} if champion is None else {metric: champion, "version": "3"}
    decision = decide_promotion({metric: challenger}, champion_metrics, NEW, rule)
    assert decision["action"] == action, decision["reason"]
    assert decision["challenger_score"] == challenger
    assert decision["champion_score"] == champion


def test_no_new_images_skips_and_unknown_metric_fails():
    assert decide_promotion({}, {}, {"files": []}, RULE)["action"] == "skip"
    assert (
        decide_promotion({"test_accuracy": 0.9}, {}, {"files": []}, {**RULE, "force": True})[
            "action"
        ]
        == "promote"
    )
    with pytest.raises(ValueError, match=r"retrain\.metric 'test_f2'"):
        decide_promotion({"test_accuracy": 0.9}, {}, NEW, {**RULE, "metric": "test_f2"})


# ---- the pool ------------------------------------------------------------------------------
def pool_of(n: int, run: str, start: int = 0) -> dict:
    return {
        "images": np.stack([pixels(i % 2, start + i) for i in range(n)])
        if n
        else np.zeros((0, 32, 32, 3), np.uint8),
        "labels": (np.arange(n) % 2).astype(np.int32),
        "classes": list(CLASSES),
        "files": [f"f{start + i}.jpg" for i in range(n)],
        "sha256": [f"h{start + i}" for i in range(n)],
        "runs": [run] * n,
    }


def test_pool_round_trip_snapshots_and_no_op_saves(tmp_path):
    dataset = TrainingPoolDataset(str(tmp_path / "pool"))
    assert not dataset.exists() and dataset.load()["files"] == []
    dataset.save(empty_pool())
    assert not dataset.exists()  # an empty pool is not written

    dataset.save(pool_of(3, "r1"))
    first = (tmp_path / "pool" / "CURRENT").read_text().strip()
    loaded = dataset.load()
    assert loaded["files"] == ["f0.jpg", "f1.jpg", "f2.jpg"] and loaded["runs"] == ["r1"] * 3
    np.testing.assert_array_equal(loaded["images"], pool_of(3, "r1")["images"])

    dataset.save(pool_of(3, "r1"))  # unchanged: no new snapshot
    assert (tmp_path / "pool" / "CURRENT").read_text().strip() == first

    for k in range(2, 5):
        dataset.save(pool_of(3 * k, "r1"))
    snapshots = [p for p in (tmp_path / "pool").iterdir() if p.is_dir()]
    assert len(snapshots) == 2 and len(dataset.load()["files"]) == 12


def test_pool_rejects_inconsistent_data_and_reports_a_broken_pointer(tmp_path):
    dataset = TrainingPoolDataset(str(tmp_path / "pool"))
    with pytest.raises(DatasetError, match="one file name, label, sha256 and run per image"):
        dataset.save({**pool_of(2, "r"), "sha256": ["only-one"]})
    dataset.save(pool_of(2, "r"))
    (tmp_path / "pool" / "CURRENT").write_text("gone\n")
    with pytest.raises(DatasetError, match="missing or incomplete"):
        dataset.load()


def test_update_pool_appends_with_the_run_id():
    incoming = {**pool_of(2, "-", start=10), "run_id": "r2"}
    pool = update_training_pool(pool_of(3, "r1"), incoming, {"action": "keep"})
    assert pool["files"] == ["f0.jpg", "f1.jpg", "f2.jpg", "f10.jpg", "f11.jpg"]
    assert pool["runs"] == ["r1"] * 3 + ["r2"] * 2 and len(pool["images"]) == 5
    empty = {**pool_of(0, "-"), "run_id": "r3"}
    assert update_training_pool(pool_of(3, "r1"), empty, {})["files"] == pool_of(3, "r1")["files"]


# ---- archive_incoming ----------------------------------------------------------------------
def test_files_are_moved_aside_by_kind_and_a_rerun_finds_them_gone(tmp_path):
    incoming_dir = tmp_path / "incoming"
    used = write(incoming_dir / "cat" / "a.jpg", b"a")
    duplicate = write(incoming_dir / "dog" / "b.jpg", b"b")
    rejected = write(incoming_dir / "bird" / "c.jpg", b"c")
    incoming = {
        "run_id": "r9",
        "source": str(incoming_dir),
        "classes": list(CLASSES),
        "files": ["cat/a.jpg"],
        "labels": np.array([0]),
        "sources": [{"file": "cat/a.jpg", "path": str(used)}],
        "duplicates": [{"file": "dog/b.jpg", "path": str(duplicate), "reason": "known"}],
        "rejected": [{"file": "bird/c.jpg", "path": str(rejected), "reason": "no class"}],
    }
    promotion = {
        "action": "keep",
        "reason": "r",
        "metric": "test_accuracy",
        "version": "2",
        "mlflow_run_id": None,
        "challenger_score": 0.5,
        "champion_score": 0.9,
        "champion_version": "1",
    }
    retrain = {"processed_dir": str(tmp_path / "processed")}

    report = archive_incoming(pool_of(1, "r9"), incoming, promotion, retrain)

    done = tmp_path / "processed" / "r9"
    assert (done / "cat" / "a.jpg").read_bytes() == b"a"
    assert (done / "duplicates" / "dog" / "b.jpg").read_bytes() == b"b"
    assert (done / "rejected" / "bird" / "c.jpg").read_bytes() == b"c"
    assert not any(p.is_file() for p in incoming_dir.rglob("*"))
    assert report["processed_dir"] == str(done) and report["new_per_class"] == {"cat": 1}
    assert report["pool_images"] == 1 and report["action"] == "keep"
    # Run again (e.g. after a crash right after moving): nothing left to move, no error.
    assert archive_incoming(pool_of(1, "r9"), incoming, promotion, retrain)["processed_dir"] is None


def test_a_pool_of_another_image_size_is_refused(splits, tmp_path):
    write(tmp_path / "cat" / "a.jpg", jpeg(0, 1))
    small = {**pool_of(2, "r1"), "images": np.zeros((2, 16, 16, 3), np.uint8)}
    with pytest.raises(ValueError, match=r"16x16 images .* but train_set has 32x32"):
        collect(splits, tmp_path, pool=small)
