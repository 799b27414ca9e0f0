"""Data checks (core.data.checks) on generated fixtures: planted label flips rank first,
planted copies (exact, resized, cropped, re-encoded) are found and leakage is marked, the split
drops them and honours an exclusion list when asked, and bad input stops with a message."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from PIL import Image

from image_classifiers.core.data import checks
from image_classifiers.core.data.split import SplitError
from image_classifiers.core.images import decode_images
from image_classifiers.core.params import DataChecksParams, SourceParams, SplitParams
from image_classifiers.pipelines.data_processing.nodes import split_data

CLASSES = ["a", "b", "c"]
FAST = DataChecksParams(folds=3, feature_size=8, components=10)


def _photo(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (upsampled colour noise), unlike any other seed's."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _copies(photo: Image.Image) -> dict[str, Image.Image]:
    size = photo.size[0]
    cut = round(size * 0.03)
    return {
        "resized": photo.resize((size * 3 // 4,) * 2),
        "cropped": photo.crop((cut, cut, size - cut, size - cut)),
        "reencoded": photo,  # saved as a JPEG below
    }


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    """Two class folders of 10 distinct photos (positions 0-9) then 3 copies (10-12): class
    a's of its photos 0 (exact bytes), 1 (resized) and 2 (cropped); b's of its photo 3
    (re-encoded), 4 (exact) and 5 (resized)."""
    root = tmp_path_factory.mktemp("folders")
    plan = {"a": [(0, "exact"), (1, "resized"), (2, "cropped")]}
    plan["b"] = [(3, "reencoded"), (4, "exact"), (5, "resized")]
    for offset, (label, copies) in enumerate(plan.items()):
        (root / label).mkdir()
        for i in range(10):
            _photo(100 * offset + i).save(root / label / f"{label}{i:02}.png")
        for position, (original, kind) in enumerate(copies, start=10):
            target = (
                root / label / f"{label}{position:02}.{'jpg' if kind == 'reencoded' else 'png'}"
            )
            if kind == "exact":
                shutil.copy(root / label / f"{label}{original:02}.png", target)
            else:
                _copies(_photo(100 * offset + original))[kind].save(target, quality=60)
    return root


def _split(root: Path, tmp_path: Path, **options) -> "object":
    split = SplitParams(
        classes=None,
        target_dir=str(tmp_path / "split"),
        ranges={"train": (0, 10), "test": (10, 13)},
        **options,
    )
    extracted = {"path": str(root), "extensions": [".png", ".jpg"]}
    return split_data(extracted, split, SourceParams(type="class_folders"))[0]


def test_planted_duplicates_are_found_and_leakage_is_marked(class_folders, tmp_path):
    manifest = _split(class_folders, tmp_path)
    files = manifest["file"].tolist()
    images, _, _ = decode_images(files, (48, 48))
    found = checks.find_duplicates(
        files,
        manifest["subset"].tolist(),
        checks.content_digests(files, images),
        checks.fingerprints(images, 8),
        SplitParams(),
    )
    pairs = {
        (Path(a).stem, Path(b).stem, kind)
        for a, b, kind in found[["file_a", "file_b", "kind"]].values
    }
    assert pairs == {
        ("a00", "a10", "exact"),
        ("a01", "a11", "near"),
        ("a02", "a12", "near"),
        ("b03", "b10", "near"),
        ("b04", "b11", "exact"),
        ("b05", "b12", "near"),
    }
    assert found["leakage"].all() and set(found["split_b"]) == {"test"}
    assert found["kind"].tolist()[:2] == ["exact", "exact"]  # exact first


def test_the_split_drops_copies_and_excluded_files_when_asked(class_folders, tmp_path):
    assert len(_split(class_folders, tmp_path)) == 26  # report only, by default
    kept = _split(class_folders, tmp_path, drop_duplicates=True)
    assert len(kept) == 20 and set(kept["subset"]) == {"train"}
    kept = _split(class_folders, tmp_path, exclude=["a05.png", "b/b07.png"])
    assert not kept["file"].str.contains("a05|b07").any() and len(kept) == 24
    with pytest.raises(SplitError, match=r"not in the split: \['a99.png'\]"):
        _split(class_folders, tmp_path, exclude=["a05.png", "a99.png"])


@pytest.fixture(scope="module")
def labelled():
    """120 images of 3 classes (a bright stripe per class) with 6 labels flipped."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 60, (120, 24, 24, 1)).astype(np.uint8)
    for i, label in enumerate(truth):
        images[i, :, label * 8 : (label + 1) * 8] += 150
    flipped = rng.choice(120, 6, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + 1) % 3
    return images, given, truth, flipped


def test_planted_label_flips_rank_first(labelled):
    images, given, truth, flipped = labelled
    probabilities = checks.out_of_fold_probabilities(images, given, 3, FAST)
    files = [f"x_train.npy#{i}" for i in range(len(given))]
    ranked = checks.rank_label_issues(files, ["train"] * len(files), given, probabilities, CLASSES)
    assert set(ranked["file"][:6]) == {files[i] for i in flipped}
    top = ranked.head(6)
    rows = [int(f.split("#")[1]) for f in top["file"]]
    assert top["suggested"].tolist() == [CLASSES[truth[i]] for i in rows]
    assert top["issue"].all() and ranked["score"].is_monotonic_increasing


def _sets(images, labels, files=None):
    files = files or [f"x.npy#{i}" for i in range(len(labels))]
    return {"images": images, "labels": labels, "classes": CLASSES, "files": files}


def test_run_checks_reports_balance_and_every_labelled_image(labelled):
    images, given, _, _ = labelled
    sets = {"train": _sets(images[:90], given[:90]), "validation": _sets(images[90:], given[90:])}
    sets["validation"]["files"] = [f"y.npy#{i}" for i in range(30)]
    sets["test"] = _sets(images[:3], given[:3], [f"t.npy#{i}" for i in range(3)])
    result = checks.run_checks(sets, SplitParams(), FAST)
    assert len(result["label_issues"]) == 120
    assert set(result["label_issues"]["split"]) == {"train", "validation"}
    # The test images are copies of the first training images: exact leakage.
    exact = result["near_duplicates"].query("kind == 'exact'")
    assert len(exact) == 3 and exact["leakage"].all()
    balance = result["class_balance"]
    assert sum(balance["images"]["all"].values()) == 123
    assert balance["imbalance_ratio"]["all"] >= 1
    report = checks.markdown_report(
        result["summary"], result["label_issues"], result["near_duplicates"], balance
    )
    assert report.startswith("## Data checks") and "Leaking pairs" in report


@pytest.mark.parametrize(
    ("labels", "same", "message"),
    [
        (np.zeros(12, int), False, "one class only"),
        (np.array([0] * 10 + [1] * 2), False, r"fewer .* than data_checks.folds=3"),
        (np.array([0, 1] * 6), True, "All 12 images are identical"),
    ],
)
def test_checks_that_cannot_run_say_why(labels, same, message):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (12, 8, 8, 1), dtype=np.uint8)
    if same:
        images[:] = images[0]
    sets = {"train": _sets(images, labels)}
    with pytest.raises(checks.DataChecksError, match=message):
        checks.run_checks(sets, SplitParams(), FAST)


@pytest.mark.parametrize(
    "bad",
    [{"duplicate_similarity": 1.5}, {"duplicate_correlation": -0.1}, {"hash_size": 6}],
)
def test_thresholds_out_of_range_are_refused(bad):
    with pytest.raises(pydantic.ValidationError):
        SplitParams(**bad)
    with pytest.raises(pydantic.ValidationError):
        DataChecksParams(folds=1)


@pytest.mark.parametrize(
    ("name", "namespace", "data"),
    [
        ("data_checks", "", ""),
        ("lenet_mnist_checks", "lenet_mnist.", "mnist."),
        ("image_folders_checks", "image_folders.", "image_folders."),
    ],
)
def test_each_checks_pipeline_reuses_its_datasets_data_pipeline(name, namespace, data):
    import importlib

    pipeline = importlib.import_module(f"image_classifiers.pipelines.{name}").create_pipeline()
    assert f"params:{data}split" in pipeline.inputs() and "params:data_checks" in pipeline.inputs()
    assert f"{namespace}split_manifest" in pipeline.all_outputs()  # one split, the dataset's own
    reports = {"label_issues", "near_duplicates", "class_balance", "data_checks_report"}
    assert {namespace + r for r in reports} <= pipeline.outputs()


@pytest.mark.slow
def test_lenet_mnist_checks_write_their_reports_and_log_them_to_mlflow(tmp_path, monkeypatch):
    import mlflow
    from fixture_archives import write_mnist_npz
    from project_copies import copy_project, run_pipeline

    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    source = write_mnist_npz(tmp_path / "mnist.npz")
    params = {"mnist": {"download": {"local_path": str(source)}}}
    run_pipeline(project, "lenet_mnist_checks", params, env="smoke")
    reports = project / "data/08_reporting/lenet_mnist"
    names = {
        "label_issues.csv",
        "near_duplicates.csv",
        "class_balance.json",
        "data_checks.md",
        "label_suspects.png",
    }
    assert names <= {p.name for p in reports.iterdir()}
    assert len(pd.read_csv(reports / "label_issues.csv")) == 60  # every train + validation digit
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("image_classifiers").experiment_id])
    logged = {a.path for run in runs for a in client.list_artifacts(run.info.run_id, "data_checks")}
    assert {f"data_checks/{name}" for name in names} <= logged
