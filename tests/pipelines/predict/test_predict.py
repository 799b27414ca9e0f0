"""Batch prediction: image sources (folders, nested zips), per-file errors, a whole run."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from PIL import Image

from image_classifiers.core.data.inputs import LINK_OUTSIDE, LINK_TO_FOLDER, NOT_REGULAR, refused
from image_classifiers.core.images import decode_image
from image_classifiers.core.models import build_classifier, load_model_file
from image_classifiers.core.params import ArchiveLimits, PredictParams
from image_classifiers.core.probabilities import apply_temperature
from image_classifiers.core.training import predict_probabilities
from image_classifiers.errors import is_user_error
from image_classifiers.pipelines.predict import create_pipeline
from image_classifiers.pipelines.predict.nodes import (
    load_prediction_model,
    predict_images,
    summarize_predictions,
)
from image_classifiers.pipelines.predict.sources import (
    UNSAFE_MEMBER,
    ImageSourceError,
    iter_image_files,
)
from image_classifiers.serving import ModelNotFoundError

PROJECT = Path(__file__).resolve().parents[3]
CLASSES = ["cat", "dog"]


def jpeg(value: int, size=(40, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(1)
    model = build_classifier("simple_convnet", (32, 32, 3), 2, filters=(4,), dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def predict(model_file: Path, **options) -> pd.DataFrame:
    return predict_images(PredictParams(model=str(model_file), classes=CLASSES, **options))


# ---- sources -------------------------------------------------------------------------------
def test_folder_is_read_recursively_and_clutter_skipped(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.JPG").write_bytes(jpeg(1))
    (tmp_path / "y.png").write_bytes(b"not really a png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(jpeg(2))
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._y.png").write_bytes(b"resource fork")

    files = list(iter_image_files(tmp_path))

    assert [f.name for f in files] == ["a/b/x.JPG", "y.png"]
    assert files[0].data == jpeg(1) and files[0].location == tmp_path / "a/b/x.JPG"
    assert files[0].parent == "b"


def test_nested_zips_are_opened_and_corrupt_ones_reported(make_archive, tmp_path):
    archive = make_archive(indices=range(3), extra_members={"train/broken.zip": b"PK\x03\x04xx"})

    files = list(iter_image_files(archive))

    names = [f.name for f in files]
    assert names[:3] == ["train.zip/train/broken.zip", "train.zip/train/cat.0.jpg", names[2]]
    assert len(files) == 7  # 6 images + the corrupt zip
    assert files[0].data is None and "corrupt" in files[0].error
    assert all(f.data for f in files[1:])
    assert files[1].parent == "train"


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda p: p / "missing", "No folder or archive"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "neither a folder nor a zip"),
    ],
)
def test_bad_sources_fail_clearly(tmp_path, make_source, message):
    with pytest.raises(ImageSourceError, match=message):
        list(iter_image_files(make_source(tmp_path)))


def test_truncated_archive_fails_clearly(make_archive, tmp_path):
    data = make_archive(indices=range(8)).read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageSourceError, match="truncated or corrupt"):
        list(iter_image_files(truncated))


def test_damaged_inner_archive_is_one_error_row(make_archive, tmp_path):
    data = bytearray(make_archive(indices=range(8)).read_bytes())
    data[200:400] = bytes(200)  # inside train.zip's bytes; the outer directory is intact
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    files = list(iter_image_files(damaged))
    assert [(f.name, f.data) for f in files] == [("train.zip", None)]
    assert "corrupt" in files[0].error


def test_path_traversal_members_are_reported_not_read(tmp_path, model_file, caplog):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/ok.jpg", jpeg(3))
        z.writestr("../escape.jpg", jpeg(4))
        z.writestr("cat/../../deeper.png", jpeg(5))
        z.writestr("/etc/absolute.jpg", jpeg(6))
        z.writestr("../notes.txt", b"not an image: skipped like any other")

    files = {f.name: f for f in iter_image_files(archive)}

    unsafe = ["../escape.jpg", "/etc/absolute.jpg", "cat/../../deeper.png"]
    assert sorted(files) == sorted(["cat/ok.jpg", *unsafe])
    assert all(files[n].data is None and files[n].error == UNSAFE_MEMBER for n in unsafe)
    assert caplog.text.count("Skipped archive member") == 3

    predictions = predict(model_file, source=str(archive)).set_index("file")
    assert predictions.loc[unsafe, "error"].tolist() == [UNSAFE_MEMBER] * 3
    assert pd.isna(predictions.loc["cat/ok.jpg", "error"])


def nested_zips(levels: int, innermost: dict[str, bytes]) -> bytes:
    data = innermost
    for _ in range(levels):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, member in data.items():
                archive.writestr(name, member)
        data = {"inner.zip": buffer.getvalue()}
    return data["inner.zip"]


def test_links_out_of_the_folder_and_special_files_get_a_row_unread(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"root:x:0:0:root:/root:/bin/bash")
    source = tmp_path / "source"
    (source / "cat").mkdir(parents=True)
    (source / "cat" / "ok.jpg").write_bytes(jpeg(1))
    (source / "cat" / "same.jpg").symlink_to(source / "cat" / "ok.jpg")  # inside: read
    (source / "cat" / "passwd.jpg").symlink_to(outside / "secret.jpg")
    (source / "elsewhere").symlink_to(outside, target_is_directory=True)
    os.mkfifo(source / "cat" / "pipe.jpg")  # opening it would block for ever
    (source / "cat" / "loop.jpg").symlink_to(source / "cat" / "loop.jpg")

    files = {f.name: f for f in iter_image_files(source)}

    assert files["cat/ok.jpg"].data == files["cat/same.jpg"].data == jpeg(1)
    assert files["cat/passwd.jpg"].data is None and files["cat/passwd.jpg"].error == LINK_OUTSIDE
    assert files["elsewhere"].error == LINK_TO_FOLDER
    assert files["cat/pipe.jpg"].error == files["cat/loop.jpg"].error == NOT_REGULAR
    assert "elsewhere/secret.jpg" not in files


def test_the_log_and_the_summary_count_the_same_unreadable_files(tmp_path, model_file, caplog):
    (tmp_path / "outside.jpg").write_bytes(jpeg(9))
    source = tmp_path / "source"
    source.mkdir()
    (source / "ok.jpg").write_bytes(jpeg(1))
    (source / "text.jpg").write_text("not an image")
    (source / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    os.mkfifo(source / "pipe.jpg")
    caplog.set_level("INFO")

    summary = summarize_predictions(predict(model_file, source=str(source)))

    assert summary["unreadable"] == 3 and summary["predicted"] == 1
    assert "Predicted 4 images in all (3 unreadable)" in caplog.text
    assert "3 of 4 files could not be read" in caplog.text


def test_archive_members_over_a_limit_get_a_row_and_cost_no_memory(tmp_path, model_file):
    archive = tmp_path / "bombs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/ok.jpg", jpeg(1))
        z.writestr("b/bomb.jpg", bytes(8 << 20))  # 8 MB of zeros: 8 KB deflated
        z.writestr("c/deep.zip", nested_zips(30, {"x.jpg": jpeg(2)}))  # RecursionError before
    limits = ArchiveLimits(max_member_mb=1, max_depth=2)

    tracemalloc.start()
    files = {f.name: f for f in iter_image_files(archive, limits)}
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert peak < 1 << 20  # the 8 MB member was never inflated
    assert files["a/ok.jpg"].data == jpeg(1)
    assert "8 MB uncompressed" in files["b/bomb.jpg"].error
    assert "predict.archive_limits.max_member_mb" in files["b/bomb.jpg"].error
    deep = [f for name, f in files.items() if name.startswith("c/deep.zip/")]
    assert [f.error for f in deep] == [refused("max_depth", "zips nested over 2 deep", "predict")]
    predictions = predict(model_file, source=str(archive), archive_limits=limits)
    assert predictions["error"].notna().sum() == 2

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(3):
            z.writestr(f"{n}.jpg", bytes(600 << 10))
    total = [f.error for f in iter_image_files(many, ArchiveLimits(max_total_mb=1))]
    assert total[0] is None and all("archive_limits.max_total_mb" in e for e in total[1:])
    count = [f.error for f in iter_image_files(many, ArchiveLimits(max_members=1))]
    assert count[0] is None and len(count) == 2 and "over 1 members" in count[1]  # then stop


def test_a_member_whose_header_understates_its_size_is_cut_at_that_size(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.jpg", bytes(8 << 20))
    lying = bytearray(data.getvalue())
    central = lying.rfind(b"PK\x01\x02")  # the central directory's uncompressed size field
    struct.pack_into("<I", lying, central + 24, 100)
    archive = tmp_path / "lying.zip"
    archive.write_bytes(bytes(lying))

    [file] = iter_image_files(archive, ArchiveLimits(max_member_mb=1))

    assert file.data is None and "Bad CRC-32" in file.error


# ---- nodes ---------------------------------------------------------------------------------
def test_predictions_one_row_per_file_with_errors(make_archive, model_file):
    archive = make_archive(
        indices=range(5),
        extra_members={"train/cat.99.jpg": b"<html>quota exceeded</html>", "train/x.csv": b"a,b"},
    )
    predictions = predict(model_file, source=str(archive), batch_size=4)

    assert list(predictions.columns) == [
        "file",
        "probability_cat",
        "probability_dog",
        "label",
        "error",
    ]
    assert len(predictions) == 11  # 10 images + the HTML page named .jpg; the CSV is skipped
    bad = predictions.set_index("file").loc["train.zip/train/cat.99.jpg"]
    assert "HTML" in bad["error"] and pd.isna(bad["label"]) and pd.isna(bad["probability_cat"])
    good = predictions[predictions["error"].isna()]
    assert len(good) == 10 and set(good["label"]) <= set(CLASSES)
    np.testing.assert_allclose(good["probability_cat"] + good["probability_dog"], 1, atol=1e-6)

    # Same numbers as decoding and predicting one by one.
    with (
        zipfile.ZipFile(archive) as outer,
        zipfile.ZipFile(io.BytesIO(outer.read("train.zip"))) as z,
    ):
        image = decode_image(z.read("train/dog.3.jpg"), (32, 32))
    expected = predict_probabilities(load_model_file(model_file), image[None])[0, 1]
    row = predictions.set_index("file").loc["train.zip/train/dog.3.jpg"]
    assert row["probability_dog"] == pytest.approx(float(expected), abs=1e-5)

    summary = summarize_predictions(predictions)
    assert summary["images"] == 11 and summary["predicted"] == 10
    assert summary["unreadable"] == 1 and sum(summary["per_label"].values()) == 10
    assert summary["unreadable_files"][0]["file"] == "train.zip/train/cat.99.jpg"


def test_a_batch_of_only_bad_files_is_not_fatal(tmp_path, model_file):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(jpeg(9))
    predictions = predict(model_file, source=str(tmp_path), batch_size=1)
    assert predictions["file"].tolist() == ["a.jpg", "b.jpg"]
    assert "empty" in predictions.loc[0, "error"] and pd.isna(predictions.loc[1, "error"])


def test_empty_folder_gives_an_empty_table(tmp_path, model_file):
    predictions = predict(model_file, source=str(tmp_path))
    assert predictions.empty and "probability_dog" in predictions.columns


def test_the_temperature_saved_beside_the_model_is_applied(tmp_path):
    # P(dog) = mean pixel / 255: far from 0.5 for a bright image.
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = tmp_path / "calibrated.keras"
    keras.Model(inputs, dense(x / 3)).save(model)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg(200))
    source = str(tmp_path / "images")
    plain = predict(model, source=source)
    model.with_suffix(".calibration.json").write_text('{"temperature": 3.0}')
    calibrated = predict(model, source=source)
    p = plain[["probability_cat", "probability_dog"]].to_numpy(dtype=float)
    expected = apply_temperature(p, 3.0)
    assert np.abs(expected - p).max() > 1e-4  # the temperature makes a difference here
    np.testing.assert_allclose(calibrated[["probability_cat", "probability_dog"]], expected)
    assert calibrated["label"].tolist() == plain["label"].tolist()  # 0.5 stays 0.5


def test_model_parameters_are_checked(model_file):
    with pytest.raises(ValueError, match=r"Set predict\.model"):
        load_prediction_model(PredictParams(model=None))
    with pytest.raises(ValueError, match=r"set predict\.classes"):
        load_prediction_model(PredictParams(model=str(model_file), classes=[]))
    classifier = load_prediction_model(
        PredictParams(model=str(model_file), classes=CLASSES, threshold=0.9)
    )
    assert classifier.threshold == 0.9


@pytest.mark.slow
def test_a_uri_that_names_no_model_is_an_error_never_another_model(sqlite_registry, model_file):
    champion = PredictParams(model="models:/cats_vs_dogs@champion", classes=CLASSES)
    with pytest.raises(ModelNotFoundError, match="train one first") as error:
        load_prediction_model(champion)  # nothing trained yet: the advice, as one message
    assert is_user_error(error.value)
    assert "retrain.force=true" in str(error.value)

    # What xception_cats leaves: Keras-flavor models under names of their own, no champion.
    # A misspelt alias or a missing champion never falls back to one of them (issue #22).
    model = load_model_file(model_file)
    with mlflow.start_run():
        mlflow.keras.log_model(model, name="model", registered_model_name="mini_xception_keras")
    for missing in ("models:/cats_vs_dogs@champion", "models:/mini_xception_keras@champoin"):
        with pytest.raises(ModelNotFoundError, match="Check the name and alias"):
            load_prediction_model(PredictParams(model=missing, classes=CLASSES))
    found = load_prediction_model(
        PredictParams(model="models:/mini_xception_keras/1", classes=CLASSES)
    )
    assert found.classes == CLASSES


@pytest.mark.slow
def test_pipeline_writes_predictions_csv(make_archive, model_file, tmp_path, monkeypatch):
    from kedro.config import OmegaConfigLoader

    monkeypatch.chdir(tmp_path)  # the catalog's data/... paths are relative
    config = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    catalog = DataCatalog.from_config(config["catalog"])
    parameters = config["parameters"]["predict"]
    archive = make_archive(indices=range(6))
    predict = {**parameters, "source": str(archive), "model": str(model_file)}
    catalog["params:predict"] = PredictParams(**predict)

    SequentialRunner().run(create_pipeline(), catalog)

    written = pd.read_csv(tmp_path / "data/07_model_output/predictions.csv")
    assert len(written) == 12 and written["error"].isna().all()
    assert (tmp_path / "data/08_reporting/predictions_summary.json").is_file()
