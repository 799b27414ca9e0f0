"""Retraining nodes one by one: incoming files, the pool, the promotion rule, moving files."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import mlflow
import pytest
from retrain_project import CLASSES, image_set, jpeg

from image_classifiers.core.data.inputs import LINK_OUTSIDE
from image_classifiers.core.models import build_classifier
from image_classifiers.core.params import EvaluationParams, RetrainParams, TrainingParams
from image_classifiers.pipelines.retrain.nodes import (
    archive_incoming,
    collect_images,
    decide_promotion,
    evaluate_challengers,
    promotion_rule,
    register_challenger,
    train_challenger,
)
from image_classifiers.serving import log_classifier


@pytest.fixture
def splits():
    return image_set(8, 1), image_set(4, 2), image_set(4, 3)


def collect(splits, source: Path, processed: Path | None = None, **options):
    train, validation, test = splits
    processed = processed or source.parent / "no-pool-yet"
    retrain = RetrainParams(incoming_dir=str(source), processed_dir=str(processed), **options)
    return collect_images(train, validation, test, retrain)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- collect_images ------------------------------------------------------------------------
def test_classes_from_folders_or_kaggle_names(splits, tmp_path):
    write(tmp_path / "dog" / "a.jpg", jpeg(1, 1))
    write(tmp_path / "batch7" / "cat.12.jpg", jpeg(0, 2))
    write(tmp_path / "cat" / "b.png", jpeg(0, 3))  # a JPEG named .png is still read

    images, delivery = collect(splits, tmp_path)

    assert images["files"] == ["batch7/cat.12.jpg", "cat/b.png", "dog/a.jpg"]
    assert images["labels"].tolist() == [0, 0, 1]
    assert images["images"].shape == (3, 32, 32, 3)  # train_set's size
    assert images["classes"] == delivery["classes"] == list(CLASSES)
    assert [(r["file"], r["label"]) for r in delivery["added"]] == [
        ("batch7/cat.12.jpg", 0),
        ("cat/b.png", 0),
        ("dog/a.jpg", 1),
    ]
    assert [r["path"] for r in delivery["added"]] == [str(tmp_path / f) for f in images["files"]]


def test_unusable_files_are_rejected_with_a_reason(splits, tmp_path):
    write(tmp_path / "bird" / "x.jpg", jpeg(0, 1))
    write(tmp_path / "cat" / "empty.jpg", b"")
    write(tmp_path / "dog" / "page.jpg", b"<html>Too many users</html>")
    write(tmp_path / "dog" / "ok.jpg", jpeg(1, 4))

    images, delivery = collect(splits, tmp_path)

    assert images["files"] == ["dog/ok.jpg"]
    reasons = {r["file"]: r["reason"] for r in delivery["rejected"]}
    assert "folder named after its class (cat, dog)" in reasons["bird/x.jpg"]
    assert "empty" in reasons["cat/empty.jpg"]
    assert "HTML" in reasons["dog/page.jpg"]
    with pytest.raises(ValueError, match="3 incoming files cannot be used"):
        collect(splits, tmp_path, on_bad_image="fail")


def test_a_link_out_of_incoming_is_rejected_unread_and_moved_aside_as_a_link(splits, tmp_path):
    secret = write(tmp_path / "etc" / "passwd", b"root:x:0:0:root:/root:/bin/bash")
    incoming_dir = tmp_path / "incoming"
    write(incoming_dir / "cat" / "ok.jpg", jpeg(0, 5))
    (incoming_dir / "cat" / "x.jpg").symlink_to(secret)

    images, delivery = collect(splits, incoming_dir, tmp_path / "processed")

    assert images["files"] == ["cat/ok.jpg"]
    assert [(r["file"], r["reason"]) for r in delivery["rejected"]] == [("cat/x.jpg", LINK_OUTSIDE)]
    archive_incoming(delivery, {}, RetrainParams(processed_dir=str(tmp_path / "processed")))
    moved = tmp_path / "processed" / delivery["run_id"] / "rejected" / "cat" / "x.jpg"
    assert moved.is_symlink() and secret.read_bytes().startswith(b"root")
    assert not (incoming_dir / "cat" / "x.jpg").is_symlink()


def test_known_files_and_fixed_split_pictures_are_not_added(splits, tmp_path):
    known = jpeg(1, 50)
    incoming = tmp_path / "incoming"
    write(tmp_path / "processed" / "r1" / "dog" / "first.jpg", known)  # in the pool
    write(incoming / "dog" / "known.jpg", known)
    write(incoming / "dog" / "known-copy.jpg", known)
    write(incoming / "cat" / "twice-a.jpg", jpeg(0, 60))
    write(incoming / "cat" / "twice-b.jpg", jpeg(0, 60))
    # A lossless copy of a test image: the same picture, a different file.
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(splits[2]["images"][1]).save(buffer, format="PNG")
    write(incoming / "dog" / "from-test.png", buffer.getvalue())

    images, delivery = collect(splits, incoming, tmp_path / "processed")

    assert delivery["pool"] == [
        {"file": "dog/first.jpg", "sha256": hashlib.sha256(known).hexdigest()}
    ]
    assert images["files"] == ["dog/first.jpg", "cat/twice-a.jpg"]  # the pool, then the new
    assert [r["file"] for r in delivery["added"]] == ["cat/twice-a.jpg"]  # twice counts once
    reasons = {d["file"]: d["reason"] for d in delivery["duplicates"]}
    assert reasons == {
        "cat/twice-b.jpg": "already in the training pool",
        "dog/from-test.png": "the same picture is in test_set",
        "dog/known-copy.jpg": "already in the training pool",
        "dog/known.jpg": "already in the training pool",
    }


def test_missing_incoming_folder_means_nothing_new(splits, tmp_path):
    images, delivery = collect(splits, tmp_path / "nothing-here")
    assert delivery["added"] == [] and images["images"].shape == (0, 32, 32, 3)


def test_an_archive_is_read_and_moved_as_a_whole(splits, tmp_path):
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/a.jpg", jpeg(0, 1))
        z.writestr("dog/b.jpg", jpeg(1, 2))
        z.writestr("__MACOSX/dog/._b.jpg", b"junk")
    _images, delivery = collect(splits, tmp_path / "unused", archive=str(archive))
    assert [r["file"] for r in delivery["added"]] == ["cat/a.jpg", "dog/b.jpg"]
    assert all("path" not in r for r in delivery["added"])  # inside the archive
    report = archive_incoming(delivery, {}, RetrainParams(processed_dir=str(tmp_path / "done")))
    assert (Path(report["processed_dir"]) / "delivery.zip").is_file() and not archive.exists()


# ---- decide_promotion ----------------------------------------------------------------------
RULE = {"metric": "test_accuracy", "min_improvement": 0.01, "min_score": 0.6}
LOSS_RULE = {"metric": "test_loss", "greater_is_better": False, "min_score": 1}


@pytest.mark.parametrize(
    ("challenger", "champion", "rule", "action"),
    [
        (0.80, None, {}, "promote"),  # no champion: a good first model wins
        (0.55, None, {}, "keep"),  # ... but not a bad one
        (0.90, 0.85, {}, "promote"),
        (0.855, 0.85, {}, "keep"),  # better, but by less than the margin
        (0.85, 0.85, {"min_improvement": 0.0}, "keep"),  # ties keep the champion
        (0.30, 0.40, LOSS_RULE, "promote"),
        (0.40, 0.30, LOSS_RULE, "keep"),
    ],
)
def test_promotion_rule(challenger, champion, rule, action):
    rule = RetrainParams(**{**RULE, **rule})
    champion_metrics = {} if champion is None else {rule.metric: champion, "version": "3"}
    decision = promotion_rule({rule.metric: challenger}, champion_metrics, rule)
    assert decision["action"] == action, decision["reason"]
    assert decision["challenger_score"] == challenger
    assert decision["champion_score"] == champion


def test_unknown_metric_fails():
    with pytest.raises(ValueError, match=r"retrain\.metric 'test_f2'"):
        promotion_rule({"test_accuracy": 0.9}, {}, RetrainParams(**{**RULE, "metric": "test_f2"}))


@pytest.mark.parametrize(
    ("ece", "bound", "action"),
    [
        (0.03, None, "promote"),  # no bound: calibration does not decide
        (0.03, 0.05, "promote"),
        (0.08, 0.05, "keep"),  # better accuracy, but its probabilities mislead
        (None, 0.05, "keep"),  # a bound asked for and nothing measured: never promote blind
    ],
)
def test_a_calibration_bound_keeps_a_misleading_challenger_out(ece, bound, action):
    rule = RetrainParams(**RULE, max_calibration_error=bound)
    metrics = {"test_accuracy": 0.9}
    if ece is not None:
        metrics["test_expected_calibration_error_calibrated"] = ece
    decision = promotion_rule(metrics, {"test_accuracy": 0.8, "version": "3"}, rule)
    assert decision["action"] == action, decision["reason"]
    if action == "keep":
        assert "exceeds retrain.max_calibration_error 0.05" in decision["reason"]


def test_a_calibration_bound_out_of_range_is_refused():
    with pytest.raises(ValueError, match="max_calibration_error"):
        RetrainParams(max_calibration_error=1.5)


def test_a_first_challenger_below_min_score_says_why_it_is_no_champion():
    decision = promotion_rule({"test_accuracy": 0.5}, {}, RetrainParams(**RULE))
    assert decision["action"] == "keep" and decision["champion_version"] is None
    assert "no champion yet" in decision["reason"]
    assert "retrain.min_score=0" in decision["reason"]


def test_no_new_images_means_no_challenger_and_nothing_downstream(splits, tmp_path, caplog):
    caplog.set_level("INFO")
    images, delivery = collect(splits, tmp_path / "nothing-here")
    arguments = {
        "train_set": splits[0],
        "images": images,
        "delivery": delivery,
        "validation_set": splits[1],
        "models": {},  # never looked at when nothing is trained
        "augmentation": None,
        "training": TrainingParams(),
    }
    retrain = RetrainParams(**RULE)
    challengers, histories = train_challenger(**arguments, retrain=retrain)
    assert challengers == {} and histories == {}
    assert "No new images: no challenger is trained" in caplog.text
    # The later nodes map over no challenger: no champion is loaded, nothing is registered.
    reports, cards, _texts = evaluate_challengers(
        challengers=challengers,
        histories=histories,
        train_set=splits[0],
        validation_set=splits[1],
        test_set=splits[2],
        evaluation=None,
        training=TrainingParams(),
        retrain=retrain,
    )
    assert reports == {} and cards == {}
    decisions = decide_promotion(reports, splits[2], None, retrain)
    assert decisions == {}
    registered = register_challenger(
        challengers=challengers,
        decisions={},
        model_cards={},
        delivery=delivery,
        test_set=splits[2],
        evaluation=None,
        export=None,
        retrain=retrain,
    )
    assert registered == {}
    with pytest.raises(ValueError, match=r"retrain\.model is 'tiny'"):  # forced: it trains
        train_challenger(**arguments, retrain=RetrainParams(**RULE, force=True, model="tiny"))


@pytest.mark.slow
def test_a_champion_that_cannot_be_scored_says_what_to_do(splits, tmp_path, sqlite_registry):
    def tiny(size: int):
        return build_classifier("simple_convnet", (size, size, 3), 2, filters=(4,), dropout=0.0)

    tiny(16).save(tmp_path / "champion.keras")  # trained on other images than test_set's
    with mlflow.start_run():
        info = log_classifier(tmp_path / "champion.keras", CLASSES, registered_model_name="cats")
    mlflow.MlflowClient().set_registered_model_alias("cats", "champion", "1")
    assert info.registered_model_version == 1

    retrain = RetrainParams(registered_model_name="cats")
    reports, *_cards = evaluate_challengers(
        challengers={"tiny": tiny(32)},
        histories={"tiny": {}},
        train_set=splits[0],
        validation_set=splits[1],
        test_set=splits[2],
        evaluation=EvaluationParams(),
        training=TrainingParams(),
        retrain=retrain,
    )
    with pytest.raises(ValueError, match="champion cats version 1 cannot be scored on the test"):
        decide_promotion(reports, splits[2], EvaluationParams(), retrain)


# ---- the pool ------------------------------------------------------------------------------
def test_the_pool_is_what_earlier_runs_moved_in_decoded_at_todays_size(splits, tmp_path):
    processed = tmp_path / "processed"
    write(processed / "r1" / "cat" / "a.jpg", jpeg(0, 1, size=64))
    write(processed / "r1" / "duplicates" / "dog" / "copy.jpg", jpeg(1, 2))
    write(processed / "r1" / "rejected" / "bird" / "x.jpg", jpeg(0, 3))
    archive = processed / "r2" / "delivery.zip"  # an archive is moved as a whole
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/b.jpg", jpeg(0, 4))
        z.writestr("dog/c.jpg", jpeg(1, 5))
        z.writestr("dog/broken.jpg", b"set aside when it came in, and again now")
        z.writestr("cat/a-again.jpg", jpeg(0, 1, size=64))  # a duplicate of r1's a.jpg

    images, delivery = collect(splits, tmp_path / "incoming", processed)

    pooled = ["cat/a.jpg", "delivery.zip/cat/b.jpg", "delivery.zip/dog/c.jpg"]
    assert [r["file"] for r in delivery["pool"]] == images["files"] == pooled
    assert images["labels"].tolist() == [0, 0, 1]
    assert images["images"].shape == (3, 32, 32, 3)  # train_set's size, whatever the files'


# ---- archive_incoming ----------------------------------------------------------------------
def test_files_are_moved_aside_by_kind_and_a_rerun_finds_them_gone(splits, tmp_path):
    incoming_dir = tmp_path / "incoming"
    used = write(incoming_dir / "cat" / "a.jpg", jpeg(0, 7))
    duplicate = write(incoming_dir / "dog" / "b.jpg", b"b")
    rejected = write(incoming_dir / "bird" / "c.jpg", b"c")
    added = {"file": "cat/a.jpg", "sha256": "a" * 64, "label": 0, "path": str(used)}
    delivery = {
        "run_id": "r9",
        "source": str(incoming_dir),
        "classes": list(CLASSES),
        "added": [added],
        "duplicates": [{"file": "dog/b.jpg", "path": str(duplicate), "reason": "known"}],
        "rejected": [{"file": "bird/c.jpg", "path": str(rejected), "reason": "no class"}],
        "pool": [{"file": "old.jpg", "sha256": "b" * 64}],
    }
    registrations = {"tiny": {"action": "keep", "version": "2"}}
    retrain = RetrainParams(processed_dir=str(tmp_path / "processed"))

    report = archive_incoming(delivery, registrations, retrain)

    done = tmp_path / "processed" / "r9"
    assert (done / "cat" / "a.jpg").read_bytes() == jpeg(0, 7)
    assert (done / "duplicates" / "dog" / "b.jpg").read_bytes() == b"b"
    assert (done / "rejected" / "bird" / "c.jpg").read_bytes() == b"c"
    assert not any(p.is_file() for p in incoming_dir.rglob("*"))
    assert report["processed_dir"] == str(done) and report["new_per_class"] == {"cat": 1}
    assert report["pool_images"] == 2 and report["challengers"] == registrations
    assert report["added"] == [added]
    # Run again (e.g. after a crash right after moving): nothing left to move, no error.
    assert archive_incoming(delivery, registrations, retrain)["processed_dir"] is None
    # The next run finds the moved file in the pool, and only that one.
    _images, again = collect(splits, incoming_dir, tmp_path / "processed")
    assert [r["file"] for r in again["pool"]] == ["cat/a.jpg"] and again["added"] == []
