"""The benchmark scripts still run (on a tiny generated archive): their figures are only
worth something if anyone can rerun them. Speed targets live in the scripts, not here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from backend_env import backend_env
from fixture_archives import write_archive

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow


def run_script(
    args: list[str], backend: str = os.environ.get("KERAS_BACKEND", "tensorflow")
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args],
        env=backend_env(backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def sample_archive(tmp_path: Path) -> Path:
    """The nested sample archive with images 0-3 (train), 1000-1003 (validation) and
    1500-1503 (test) of each class: what ``--limit 4`` reads."""
    indices = [n for start in (0, 1000, 1500) for n in range(start, start + 4)]
    return write_archive(tmp_path / "dogs-vs-cats.zip", indices=indices)


def test_data_processing_benchmark_reports_every_stage(tmp_path):
    # The script splits the book's ranges, so the archive needs <class>.0 ... <class>.2499.
    archive = write_archive(tmp_path / "dogs-vs-cats.zip", indices=range(2500), image_size=(8, 8))
    result = run_script(
        [
            str(BENCHMARKS / "data_processing.py"),
            str(archive),
            "--repeat",
            "1",
            "--size",
            "16",
            "16",
            "--tmp",
            str(tmp_path),
        ]
    )
    for stage in ("extract", "split", "decode", "extract+split+decode", "save sets"):
        assert stage in result.stdout, result.stdout


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_train_gpu_benchmark_writes_its_figures(tmp_path):
    archive = sample_archive(tmp_path)
    output = tmp_path / "results.json"
    run_script(
        [
            str(BENCHMARKS / "train_gpu.py"),
            "--archive",
            str(archive),
            "--epochs",
            "3",
            "--limit",
            "4",
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--set",
            "training.ema=true",
            "--output",
            str(output),
        ],
        backend="jax",
    )
    results = json.loads(output.read_text())
    assert results["backend"] == "jax"
    assert results["training"]["ema"] is True and results["settings"] == ["training.ema=true"]
    assert results["images"] == {"train": 8, "validation": 8, "test": 8}
    assert results["parameters"] == 721_857  # mini-Xception does not depend on the image size
    assert 0 < results["steady_epoch_seconds"] <= results["first_epoch_seconds"]
    assert 0 < results["input_seconds_per_epoch"] < results["steady_epoch_seconds"]
    assert results["train_wall_seconds"] >= results["first_epoch_seconds"]
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_loss"] > 0
    assert 1 <= results["best_epoch"] <= 3
    assert len(results["history"]["val_loss"]) == len(results["history"]["epoch_seconds"]) == 3


def test_class_folders_benchmark_compares_both_sources_on_the_same_images(tmp_path):
    # Kaggle ranges 0-1000-1500-2500 per class: the archive needs every index up to 2499.
    archive = write_archive(tmp_path / "dogs-vs-cats.zip", indices=range(2500), image_size=(4, 4))
    output = tmp_path / "class_folders.json"
    result = run_script(
        [
            str(BENCHMARKS / "class_folders.py"),
            str(archive),
            "--repeat",
            "1",
            "--size",
            "8",
            "8",
            "--tmp",
            str(tmp_path),
            "--output",
            str(output),
        ]
    )
    assert "ratio cf / kn" in result.stdout
    results = json.loads(output.read_text())
    assert [len(results["passes"][kind]) for kind in ("kaggle_names", "class_folders")] == [1, 1]
    assert results["passes"]["class_folders"][0]["images"] == 5000
    assert results["ratio_class_folders_over_kaggle_names"]["best_wall_s"] > 0


def test_plain_keras_port_reports_every_epoch(tmp_path):
    archive = sample_archive(tmp_path)
    output = tmp_path / "plain.json"
    result = run_script(
        [
            str(BENCHMARKS / "plain_keras_port.py"),
            "--archive",
            str(archive),
            "--epochs",
            "2",
            "--limit",
            "4",
            "--image-size",
            "32",
            "--output",
            str(output),
        ]
    )
    assert "Epoch 2/2" in result.stdout
    results = json.loads(output.read_text())
    assert results["parameters"] == 721_857  # the book's model, as the project's
    assert len(results["epoch_seconds"]) == 2 and min(results["epoch_seconds"]) > 0


def test_larger_than_ram_benchmark_records_peak_memory_per_size(tmp_path):
    archive = write_archive(tmp_path / "dogs-vs-cats.zip", indices=range(8), image_size=(24, 24))
    output = tmp_path / "larger_than_ram.json"
    result = run_script(
        [
            str(BENCHMARKS / "larger_than_ram.py"),
            "--archive",
            str(archive),
            "--sizes",
            "16",
            "32",
            "--image-size",
            "32",  # the benchmark's convnet pools three times
            "--source-size",
            "40",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--chunk-size",
            "5",
            "--work",
            str(tmp_path / "work"),
            "--output",
            str(output),
        ]
    )
    assert "Peak RSS spread" in result.stdout
    results = json.loads(output.read_text())
    assert [run["decoded"] for run in results["runs"]] == [16, 32]  # 16 photos, then mirrored crops
    for run in results["runs"]:
        assert run["peak_rss_mb"] >= run["peak_rss_mb_after_decode"] > 0
        assert 0 < run["peak_anon_rss_mb"] <= run["peak_rss_mb"]
        assert run["train_steps"] == 2


def test_kedro_epoch_benchmark_times_both_in_the_same_session(tmp_path):
    archive = sample_archive(tmp_path)
    output = tmp_path / "kedro_epoch.json"
    run_script(
        [
            str(BENCHMARKS / "kedro_epoch.py"),
            f"--archive={archive}",
            "--image-size=32",
            "--limit=4",
            "--epochs=2",
            "--rounds=1",
            f"--output={output}",
        ]
    )
    results = json.loads(output.read_text())
    # Both epochs of the real `kedro run` were found in its log, and the port's.
    assert [len(run) for run in results["runs"]["kedro_run"]] == [2]
    assert [len(run) for run in results["runs"]["plain_keras_port"]] == [2]
    assert results["ratio_kedro_over_plain_later_epochs"] > 0
    assert results["images_per_split"] == 8


def test_export_benchmark_reports_every_format(tmp_path):
    archive = sample_archive(tmp_path)
    output = tmp_path / "export.json"
    result = run_script(
        [
            str(BENCHMARKS / "export.py"),
            f"--archive={archive}",
            *("--image-size=32", "--limit=4", "--epochs=1", "--batch-size=4"),
            *("--latency-runs=2", "--max-accuracy-drop=1", f"--output={output}"),
        ]
    )
    results = json.loads(output.read_text())
    assert results["images"] == {"train": 8, "validation": 8, "test": 8}
    assert [r["status"] for r in results["formats"].values()] == ["ok"] * 6
    assert "| onnx_int8 | ok |" in result.stdout


def test_benchmark_figures_are_written_whole_or_not_at_all(tmp_path):
    spec = importlib.util.spec_from_file_location("_results", BENCHMARKS / "_results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    path = tmp_path / "figures.json"
    results.write_results(path, {"epoch_seconds": [1.5, 1.25]})
    with pytest.raises(TypeError):
        results.write_results(path, {"epoch_seconds": [object()]})  # fails half-way
    assert json.loads(path.read_text()) == {"epoch_seconds": [1.5, 1.25]}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
