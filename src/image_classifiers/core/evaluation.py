"""The evaluation report's numbers, on predicted probabilities (numpy in, JSON-ready out):
per-class scores, the most-confused pairs, top losses, calibration (ECE, Brier, reliability,
temperature scaling) and the model card's text. No Kedro, no MLflow, no plotting."""

import hashlib
import logging
import math
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from image_classifiers.core.probabilities import apply_temperature

logger = logging.getLogger(__name__)


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python numbers, so that
    ``json.dumps(..., allow_nan=False)`` (strict JSON) accepts it."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [strict_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def per_class_metrics(
    labels: np.ndarray, predictions: np.ndarray, classes: list[str]
) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of every class; a score that divides by zero (a class
    never predicted or without test images) is None, not a made-up 0."""
    indices = list(range(len(classes)))
    scores = precision_recall_fscore_support(
        labels, predictions, labels=indices, average=None, zero_division=np.nan
    )
    table = {
        name: {"precision": p, "recall": r, "f1": f, "support": int(s)}
        for name, p, r, f, s in zip(classes, *scores, strict=True)
    }
    if absent := [name for name, row in table.items() if row["support"] == 0]:
        logger.warning(
            "No test images of class %s: its recall is null in metrics.json.",
            ", ".join(map(repr, absent)),
        )
    return strict_json(table)


def most_confused(matrix: np.ndarray, classes: list[str], top: int) -> list[dict[str, Any]]:
    """The ``top`` pairs of classes mistaken for each other most often (either way), with the
    count in each direction; pairs never confused are left out."""
    matrix = np.asarray(matrix)
    pairs = [
        {"a": classes[i], "b": classes[j], "a_as_b": int(matrix[i, j]), "b_as_a": int(matrix[j, i])}
        for i in range(len(classes))
        for j in range(i + 1, len(classes))
    ]
    for pair in pairs:
        pair["total"] = pair["a_as_b"] + pair["b_as_a"]
    pairs = [p for p in pairs if p["total"]]
    return sorted(pairs, key=lambda p: -p["total"])[:top]  # stable: ties in class order


def sample_losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's cross-entropy, ``-log p(true class)``, clipped away from log(0)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, 1e-7, 1.0))


def top_losses(
    probabilities: np.ndarray, labels: np.ndarray, predictions: np.ndarray
) -> np.ndarray:
    """Indices of the misclassified images, highest loss first (ties: the more confident)."""
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    loss = sample_losses(probabilities, labels)[wrong]
    return wrong[np.lexsort((-confidence, -loss))]


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, list]:
    """Per equal-width confidence bin (of the top class): mean confidence, accuracy and count;
    empty bins have None for the first two."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin b holds confidences in (b/bins, (b+1)/bins]; confidence 1/k is the lowest possible.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        accuracy = np.bincount(which, correct.astype(float), bins) / counts
    return strict_json({"confidence": mean_confidence, "accuracy": accuracy, "count": counts})


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """ECE: the gap between accuracy and confidence, averaged over the bins by their size."""
    table = reliability(probabilities, labels, bins)
    return float(
        sum(
            n * abs(a - c)
            for c, a, n in zip(table["confidence"], table["accuracy"], table["count"], strict=True)
            if n
        )
        / len(labels)
    )


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot label (0 best, 2 worst;
    for two classes twice scikit-learn's ``brier_score_loss`` of the second class)."""
    onehot = np.eye(probabilities.shape[1])[labels]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the cross-entropy of ``softmax(log p / T)`` (Guo et
    al. 2017, temperature scaling): above 1 softens an over-confident model."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        scaled = apply_temperature(probabilities, math.exp(log_t))
        return float(np.mean(sample_losses(scaled, labels)))

    # log T in [-3, 3]: T from 0.05 to 20, far beyond what a trained network needs.
    return float(math.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))


def calibration_metrics(
    probabilities: np.ndarray, labels: np.ndarray, temperature: float, bins: int
) -> dict[str, float]:
    """ECE and Brier score of the test probabilities, as predicted and after ``temperature``."""
    scaled = apply_temperature(probabilities, temperature)
    return {
        "test_expected_calibration_error": expected_calibration_error(probabilities, labels, bins),
        "test_expected_calibration_error_calibrated": expected_calibration_error(
            scaled, labels, bins
        ),
        "test_brier": brier_score(probabilities, labels),
        "test_brier_calibrated": brier_score(scaled, labels),
        "temperature": float(temperature),
    }


def image_set_digest(image_set: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of every pixel and label: same digest, same data."""
    digest = hashlib.sha256()
    for array in (image_set["images"], np.asarray(image_set["labels"])):
        digest.update(np.ascontiguousarray(array).data)  # a memory map is read, not copied
    return digest.hexdigest()[:16]


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats with 4 decimals, None as n/a."""

    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [header, ["---"] * len(header), *[[cell(v) for v in row] for row in rows]]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def split_summary(image_set: dict[str, Any]) -> dict[str, Any]:
    """A split's size per class, digest and the folder it was read from (if memory-mapped)."""
    labels = np.asarray(image_set["labels"])
    classes = [str(c) for c in image_set["classes"]]
    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else [0] * len(classes)
    filename = getattr(image_set["images"], "filename", None)
    return {
        "images": len(labels),
        "per_class": dict(zip(classes, map(int, counts), strict=True)),
        "digest": image_set_digest(image_set),
        "source": str(filename).rsplit("/", 1)[0] if filename else None,
    }


AVERAGES = ["accuracy", "precision", "recall", "F1", "ROC AUC", "loss"]  # test_<key> metrics


def model_card(
    model: dict[str, Any],
    metrics: dict[str, Any],
    *,
    calibration: dict[str, Any],
    losses: list[dict[str, Any]],
    splits: dict[str, dict[str, Any]],
    training: dict[str, Any],
    command: str | None,
) -> str:
    """The model card in Markdown: data, architecture, metrics per class, calibration, top
    losses, intended use and limits, how to reproduce it."""
    classes = metrics["classes"]
    shape = "x".join(map(str, model["input_shape"]))
    per_class = metrics["per_class"]
    splits_table = markdown_table(
        ["split", "images", *classes, "digest (sha256/16)", "read from"],
        [
            [name, s["images"], *s["per_class"].values(), f"`{s['digest']}`", s["source"]]
            for name, s in splits.items()
        ],
    )
    columns = ["precision", "recall", "f1", "support"]
    class_table = markdown_table(
        ["class", *columns], [[c, *(per_class[c][k] for k in columns)] for c in classes]
    )
    confused = [
        f"- {p['a']} / {p['b']}: {p['total']} ({p['a']} as {p['b']}: {p['a_as_b']}, "
        f"{p['b']} as {p['a']}: {p['b_as_a']})"
        for p in metrics["most_confused"]
    ] or ["- none: no test image was misclassified"]
    worst = [
        f"- `{r['file']}`: {r['true_class']} predicted {r['predicted_class']} with "
        f"probability {r['probability']:.3f} (loss {r['loss']:.3f})"
        for r in losses[:5]
    ] or ["- none"]
    weakest = min(
        (c for c in classes if per_class[c]["f1"] is not None),
        key=lambda c: per_class[c]["f1"],
        default=None,
    )
    temperature = calibration.get("temperature", 1.0)
    scaled = (
        f"A temperature of {temperature:.3f}, fitted on the "
        f"{calibration.get('validation_images')} validation images, is saved with the model "
        "and applied by predict and serving: test ECE "
        f"{metrics['test_expected_calibration_error']:.4f} -> "
        f"{metrics['test_expected_calibration_error_calibrated']:.4f}, Brier "
        f"{metrics['test_brier']:.4f} -> {metrics['test_brier_calibrated']:.4f}."
        if calibration.get("calibrated")
        else "No temperature was fitted (evaluation.calibrate is false): probabilities are "
        f"served as predicted (test ECE {metrics['test_expected_calibration_error']:.4f})."
    )
    settings = ", ".join(f"{k}={v}" for k, v in training.items() if not isinstance(v, dict))
    sections = [
        f"# Model card: {model['name']}",
        f"Classifies {shape} images into {len(classes)} classes: {', '.join(classes)}.",
        "## Data",
        "Splits of the data pipeline; the digest hashes every pixel and label (the MLflow "
        "run's dataset inputs carry the same digests), the archive's SHA-256 is the run's "
        "`dataset_sha256` tag.",
        splits_table,
        "## Architecture and training",
        f"{model['name']}: {model['parameters']:,} parameters, input {shape}, trained "
        f"{model['epochs']} epochs.\n\nTraining parameters: {settings}.",
        f"<details><summary>Keras summary</summary>\n\n```\n{model.get('summary', '')}\n```"
        "\n</details>",
        "## Test metrics",
        markdown_table(
            AVERAGES, [[metrics.get(f"test_{k.lower().replace(' ', '_')}") for k in AVERAGES]]
        ),
        f"Per class (threshold {metrics['threshold']}):",
        class_table,
        "## Calibration",
        f"Expected calibration error (ECE) {metrics['test_expected_calibration_error']:.4f}, "
        f"Brier score {metrics['test_brier']:.4f} (see reliability.png). {scaled}",
        "## Failure modes",
        "Most-confused class pairs:",
        "\n".join(confused),
        f"Highest losses ({len(losses)} misclassified test images in top_losses.csv):",
        "\n".join(worst),
        "## Intended use and limits",
        f"For images like the training data ({shape}, one of: {', '.join(classes)}). An image "
        "of another class still gets one of these labels, usually with high probability; "
        "the scores above hold for data like the test split only"
        + (f", and are weakest for class {weakest}." if weakest else "."),
        "## Reproduce",
        "```\n"
        + (command or "kedro run --pipelines=<pipeline that trained it>  # tag kedro_pipeline")
        + "\nkedro run --pipelines=predict "
        '--params="predict.model=<this .keras file>,predict.source=<images>"\n```',
    ]
    return "\n\n".join(sections) + "\n"
