"""core/evaluation.py: the evaluation report's numbers against hand-computed values."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from image_classifiers.core.evaluation import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    image_set_digest,
    model_card,
    most_confused,
    per_class_metrics,
    reliability,
    sample_losses,
    split_summary,
    strict_json,
    top_losses,
)
from image_classifiers.core.probabilities import apply_temperature


def binary(p_second: list[float]) -> np.ndarray:
    p = np.asarray(p_second, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 images at confidence 0.8 (8 right), 5 at 0.6 (3 right): perfectly calibrated.
    probabilities = binary([0.8] * 10 + [0.6] * 5)
    labels = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 2)
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.0)
    table = reliability(probabilities, labels, bins=10)
    assert sum(table["count"]) == 15
    assert [a for a in table["accuracy"] if a is not None] == pytest.approx([0.6, 0.8])
    assert table["confidence"][0] is None  # an empty bin: no made-up number


def test_ece_and_brier_of_an_overconfident_toy_case():
    # Confidence 0.9 on every image, half of them right: ECE |0.5 - 0.9| = 0.4.
    probabilities = binary([0.9] * 4)
    labels = np.array([1, 1, 0, 0])
    assert expected_calibration_error(probabilities, labels, bins=15) == pytest.approx(0.4)
    # Brier: right (0.1² + 0.1²) and wrong (0.9² + 0.9²), averaged: (0.02 + 1.62) / 2.
    assert brier_score(probabilities, labels) == pytest.approx(0.82)
    assert brier_score(np.eye(3), np.arange(3)) == 0.0


def test_temperature_softens_an_overconfident_model_and_lowers_its_loss():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    # Right 70 % of the time, always with probability 0.98: over-confident.
    predicted = np.where(rng.random(300) < 0.7, labels, (labels + 1) % 3)
    probabilities = np.full((300, 3), 0.01)
    probabilities[np.arange(300), predicted] = 0.98
    temperature = fit_temperature(probabilities, labels)
    assert temperature > 1
    scaled = apply_temperature(probabilities, temperature)
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0, rtol=1e-6)
    assert (scaled.argmax(axis=1) == predicted).all()  # the ranking is kept
    assert np.mean(sample_losses(scaled, labels)) < np.mean(sample_losses(probabilities, labels))
    # At the optimum the confidence is about the accuracy: ECE drops near zero.
    report = calibration_metrics(probabilities, labels, temperature, bins=15)
    assert report["test_expected_calibration_error"] > 0.25
    assert report["test_expected_calibration_error_calibrated"] < 0.05
    assert report["test_brier_calibrated"] < report["test_brier"]
    assert apply_temperature(probabilities, 1.0) is probabilities


def test_top_losses_are_the_mistakes_highest_loss_first():
    probabilities = np.array(
        [[0.1, 0.9, 0.0], [0.6, 0.3, 0.1], [0.2, 0.1, 0.7], [0.05, 0.9, 0.05], [0.05, 0.65, 0.3]]
    )
    labels = np.array([1, 1, 0, 0, 2])
    predictions = probabilities.argmax(axis=1)
    # Mistakes: 1 (loss -log .3), 2 (-log .2), 3 (-log .05), 4 (-log .3, but 0.65 sure against 0.6).
    assert top_losses(probabilities, labels, predictions).tolist() == [3, 2, 4, 1]
    assert top_losses(np.eye(2), np.arange(2), np.arange(2)).tolist() == []


def test_per_class_scores_supports_and_a_class_without_test_images(caplog):
    labels = np.array([0, 0, 0, 1, 1])
    predictions = np.array([0, 1, 0, 1, 2])
    with caplog.at_level(logging.WARNING):
        table = per_class_metrics(labels, predictions, ["cat", "dog", "fox", "owl"])
    assert sum(row["support"] for row in table.values()) == len(labels)
    assert table["cat"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": 0.8,
        "support": 3,
    }
    assert table["dog"]["precision"] == 0.5 and table["dog"]["recall"] == 0.5
    # fox: no test images, predicted once: recall is undefined (F1 = 2TP / (2TP + FP + FN)
    # is 0); owl, never seen nor predicted: nothing is defined.
    assert table["fox"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert table["owl"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert "No test images of class 'fox', 'owl'" in caplog.text
    json.dumps(table, allow_nan=False)  # strict JSON


def test_strict_json_replaces_what_json_cannot_hold():
    value = {"a": float("nan"), "b": [np.float32(0.5), np.inf], 3: np.int64(2), "c": "x"}
    assert strict_json(value) == {"a": None, "b": [0.5, None], "3": 2, "c": "x"}
    json.dumps(strict_json(value), allow_nan=False)


def test_most_confused_counts_both_directions():
    matrix = np.array([[5, 2, 0], [3, 4, 1], [0, 0, 6]])
    pairs = most_confused(matrix, ["cat", "dog", "fox"], top=10)
    assert pairs == [
        {"a": "cat", "b": "dog", "a_as_b": 2, "b_as_a": 3, "total": 5},
        {"a": "dog", "b": "fox", "a_as_b": 1, "b_as_a": 0, "total": 1},
    ]
    assert most_confused(matrix, ["cat", "dog", "fox"], top=1) == pairs[:1]


def test_model_card_names_data_metrics_calibration_and_failures():
    image_set = {
        "images": np.zeros((3, 2, 2, 3), np.uint8),
        "labels": np.array([0, 1, 1]),
        "classes": ["cat", "dog"],
    }
    split = split_summary(image_set)
    assert split["per_class"] == {"cat": 1, "dog": 2}
    assert split["digest"] == image_set_digest(image_set) and len(split["digest"]) == 16
    metrics = {
        "classes": ["cat", "dog"],
        "per_class": {
            "cat": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
            "dog": {"precision": 0.5, "recall": None, "f1": None, "support": 0},
        },
        "most_confused": [{"a": "cat", "b": "dog", "a_as_b": 1, "b_as_a": 0, "total": 1}],
        "threshold": 0.5,
        "num_test_images": 2,
        **dict.fromkeys(["test_accuracy", "test_precision", "test_recall", "test_f1"], 0.5),
        "test_roc_auc": None,
        "test_loss": 0.7,
        **calibration_metrics(binary([0.9, 0.2]), np.array([1, 1]), 1.5, bins=10),
    }
    losses = [
        {"file": "cat.7.jpg", "true_class": "cat", "predicted_class": "dog", "probability": 0.8}
        | {"loss": 1.6}
    ]
    card = model_card(
        {"name": "tiny", "input_shape": [2, 2, 3], "parameters": 1234, "epochs": 2},
        metrics,
        calibration={"temperature": 1.5, "calibrated": True, "validation_images": 3},
        losses=losses,
        splits={"train": split, "test": split},
        training={"epochs": 2, "optimizer": {"name": "adam"}},
        command="kedro run --pipelines=model_training",
    )
    for text in (
        "# Model card: tiny",
        f"| train | 3 | 1 | 2 | `{split['digest']}` |",
        "| cat | 1.0000 | 0.5000 | 0.6667 | 2 |",
        "| dog | 0.5000 | n/a | n/a | 0 |",
        "A temperature of 1.500",
        "- cat / dog: 1 (cat as dog: 1, dog as cat: 0)",
        "`cat.7.jpg`: cat predicted dog with probability 0.800",
        "weakest for class cat",
        "kedro run --pipelines=model_training",
        "1,234 parameters",
    ):
        assert text in card, text
