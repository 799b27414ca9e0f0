"""Retraining with champion/challenger promotion.

    incoming images --validate, dedupe--> new images
    train_set + training pool + new images --train--> challenger
    challenger, champion --evaluate on the fixed test_set--> scores --decide--> promote or keep
    register the challenger (alias ``challenger``; ``champion`` moves only on promotion)
    training pool + new images --save--> pool;  then incoming files are moved aside

Nothing is lost or counted twice when a run fails: the pool and the incoming folder change
only in the last two nodes, after the decision is recorded, and a rerun recognises images
already in the pool by their SHA-256 (they are moved aside, not added again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
import numpy as np

from image_classifiers.images import UnreadableImageError, decode_image
from image_classifiers.pipelines.model_training.nodes import (
    build_model,
    evaluate_model,
    train_model,
)
from image_classifiers.pipelines.predict.sources import ImageFile, iter_image_files
from image_classifiers.serving import alias_version, load_classifier, log_classifier

logger = logging.getLogger(__name__)

PROMOTE, KEEP, SKIP = "promote", "keep", "skip"


# ---- 1. collect ------------------------------------------------------------------------------
def collect_incoming(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    training_pool: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """Read, validate and decode the new labeled images; drop those already known.

    The class of a file is the name of the folder it is in (``incoming/dog/x.jpg``), or, in
    Kaggle's naming, its prefix (``dog.12.jpg``). Files are decoded like the data pipeline
    decodes (same size as ``train_set``). A file is set aside, not added, when it cannot be
    decoded or its class is unknown (``rejected``), or when the same file is already in the
    pool or the same picture is in one of the fixed splits (``duplicates``) -- so that a
    rerun adds nothing twice and no test image leaks into training.

    Args:
        train_set: The data pipeline's training split (gives the classes and image size).
        validation_set: The fixed validation split (checked for duplicates).
        test_set: The fixed test split (checked for duplicates).
        training_pool: Images earlier retraining runs added (``TrainingPoolDataset``).
        retrain: ``incoming_dir``, ``archive``, ``on_bad_image`` (skip | fail).

    Returns:
        ``images``, ``labels``, ``classes``, ``files``, ``sha256`` of the new images, the
        ``sources`` to move aside after the run (with where to), ``rejected``,
        ``duplicates`` and the ``run_id`` naming this run's folder of processed files.

    Raises:
        ValueError: With ``on_bad_image: fail``, if any file is unreadable or unlabeled.
    """
    classes = [str(c) for c in train_set["classes"]]
    height, width = (int(v) for v in train_set["images"].shape[1:3])
    source = Path(retrain.get("archive") or retrain["incoming_dir"])
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {
        "run_id": run_id,
        "source": str(source),
        "classes": classes,
        "files": [],
        "labels": [],
        "sha256": [],
        "sources": [],
        "rejected": [],
        "duplicates": [],
    }
    if not source.exists():
        logger.info("No new images: '%s' does not exist. Nothing to retrain.", source)
        return _finish_incoming(result, [], (height, width))
    _check_pool_fits(training_pool, classes, (height, width))
    known = set(training_pool["sha256"])
    fixed = _pixel_hashes(train_set, validation_set, test_set)
    images: list[np.ndarray] = []
    for file in iter_image_files(source):
        record = {"file": file.name}
        if file.location is not None:
            record["path"] = str(file.location)
        label = _class_of(file, classes)
        digest = hashlib.sha256(file.data).hexdigest() if file.data is not None else None
        if label is None:
            result["rejected"].append({**record, "reason": _unknown_class(file, classes)})
            continue
        if digest is None:
            result["rejected"].append({**record, "reason": file.error or "unreadable"})
            continue
        if digest in known:
            result["duplicates"].append({**record, "reason": "already in the training pool"})
            continue
        try:
            image = decode_image(file.data, (height, width))
        except UnreadableImageError as exc:
            result["rejected"].append({**record, "reason": exc.reason})
            continue
        split = fixed.get(_pixel_hash(image))
        if split is not None:
            result["duplicates"].append({**record, "reason": f"the same picture is in {split}"})
            continue
        known.add(digest)  # the same file twice in one delivery counts once
        images.append(image)
        result["files"].append(file.name)
        result["labels"].append(classes.index(label))
        result["sha256"].append(digest)
        result["sources"].append(record)
    if result["rejected"] and retrain.get("on_bad_image", "skip") == "fail":
        shown = "; ".join(f"{r['file']}: {r['reason']}" for r in result["rejected"][:5])
        raise ValueError(
            f"{len(result['rejected'])} incoming files cannot be used ({shown}). Fix or "
            "remove them, or set retrain.on_bad_image: skip to set them aside."
        )
    if source.is_file():  # an archive is moved aside as a whole
        result["sources"] = [{"file": source.name, "path": str(source)}]
    return _finish_incoming(result, images, (height, width))


def _check_pool_fits(pool: dict[str, Any], classes: list[str], size: tuple[int, int]) -> None:
    if not len(pool["files"]):
        return
    pool_size = tuple(int(v) for v in pool["images"].shape[1:3])
    if list(pool["classes"]) != classes or pool_size != size:
        raise ValueError(
            f"The training pool holds {'x'.join(map(str, pool_size))} images of classes "
            f"{list(pool['classes'])} but train_set has {'x'.join(map(str, size))} images of "
            f"{classes}: it was built for another data set or image size. Move the pool "
            "folder (data/03_primary/training_pool) aside to start a new one; its images' "
            "files are under the incoming_processed folder."
        )


def _finish_incoming(
    result: dict[str, Any], images: list[np.ndarray], size: tuple[int, int]
) -> dict[str, Any]:
    result["images"] = np.stack(images) if images else np.zeros((0, *size, 3), dtype=np.uint8)
    result["labels"] = np.asarray(result["labels"], dtype=np.int32)
    counts = Counter(result["classes"][i] for i in result["labels"])
    logger.info(
        "Incoming: %d new images (%s), %d already known, %d rejected.",
        len(result["files"]),
        ", ".join(f"{c}: {counts[c]}" for c in result["classes"]) or "none",
        len(result["duplicates"]),
        len(result["rejected"]),
    )
    for item in result["rejected"][:10]:
        logger.warning("Set aside %s: %s", item["file"], item["reason"])
    return result


def _class_of(file: ImageFile, classes: list[str]) -> str | None:
    if file.parent in classes:
        return file.parent
    prefix = PurePosixPath(file.name).name.split(".", 1)[0]
    return prefix if prefix in classes else None


def _unknown_class(file: ImageFile, classes: list[str]) -> str:
    return (
        f"no class: put it in a folder named after its class ({', '.join(classes)}), "
        f"e.g. incoming/{classes[0]}/{PurePosixPath(file.name).name}"
    )


def _pixel_hash(image: np.ndarray) -> str:
    """SHA-256 of an image's pixels (``tobytes`` is C-ordered even for a strided view)."""
    return hashlib.sha256(image.tobytes()).hexdigest()


def _pixel_hashes(*image_sets: dict[str, Any]) -> dict[str, str]:
    names = ("train_set", "validation_set", "test_set")
    hashes = {}
    for name, image_set in zip(names, image_sets, strict=True):
        for image in image_set["images"]:
            hashes[_pixel_hash(image)] = name
    return hashes


def has_new_images(incoming: dict[str, Any], retrain: dict[str, Any]) -> bool:
    """Whether a challenger is to be trained: new images came in, or ``retrain.force``."""
    return bool(len(incoming["files"]) or retrain.get("force", False))


# ---- 2. train --------------------------------------------------------------------------------
def train_challenger(
    *,
    train_set: dict[str, Any],
    training_pool: dict[str, Any],
    incoming: dict[str, Any],
    validation_set: dict[str, Any],
    models: dict[str, Any],
    augmentation: dict[str, Any] | None,
    training: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """Train a new model on ``train_set`` + the pool + the new images.

    The architecture is ``models[retrain.model]``; ``retrain.training`` overrides single keys
    of ``training`` (e.g. ``epochs``). Nothing is trained when there are no new images.

    Returns:
        ``{"model": keras.Model | None, "history": {...}, "train_images": int}``.
    """
    if not has_new_images(incoming, retrain):
        logger.info("No new images: no challenger is trained.")
        return {"model": None, "history": {}, "train_images": 0}
    name = retrain["model"]
    if name not in models:
        raise ValueError(
            f"retrain.model is '{name}' but models has no such entry; choose one of "
            f"{sorted(models)} (parameters_model_training.yml)."
        )
    options = {**training, **(retrain.get("training") or {})}
    pool = training_set(train_set, training_pool, incoming)
    logger.info(
        "Training challenger '%s' on %d images (%d from train_set, %d from the pool, %d new).",
        name,
        len(pool["labels"]),
        len(train_set["labels"]),
        len(training_pool["labels"]),
        len(incoming["labels"]),
    )
    model = build_model(pool, models[name], augmentation, options)
    model, history = train_model(model, pool, validation_set, options)
    return {"model": model, "history": history, "train_images": len(pool["labels"])}


def training_set(
    train_set: dict[str, Any], training_pool: dict[str, Any], incoming: dict[str, Any]
) -> dict[str, Any]:
    """``train_set``, the pool and the new images as one image set."""
    parts = [train_set, incoming]
    if len(training_pool["files"]):
        parts.insert(1, training_pool)
    return {
        "images": np.concatenate([np.asarray(p["images"]) for p in parts]),
        "labels": np.concatenate([np.asarray(p["labels"], dtype=np.int32) for p in parts]),
        "classes": list(train_set["classes"]),
        "files": [str(f) for p in parts for f in p["files"]],
    }


# ---- 3. evaluate -----------------------------------------------------------------------------
def evaluate_challenger(
    challenger: dict[str, Any], test_set: dict[str, Any], evaluation: dict[str, Any]
) -> dict[str, Any]:
    """The challenger's test metrics (``{}`` when none was trained)."""
    if challenger["model"] is None:
        return {}
    metrics, *_figures = evaluate_model(challenger["model"], test_set, evaluation)
    return metrics


def evaluate_champion(
    incoming: dict[str, Any],
    test_set: dict[str, Any],
    evaluation: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """The current champion's metrics on the same test set (``{}`` if there is none).

    Returns:
        The metrics plus ``version`` of the champion, or ``{}``.
    """
    if not has_new_images(incoming, retrain):
        return {}
    name, alias = retrain["registered_model_name"], retrain["champion_alias"]
    version = alias_version(name, alias)
    if version is None:
        logger.info("No champion yet ('%s@%s' does not exist).", name, alias)
        return {}
    champion = load_classifier(f"models:/{name}@{alias}")
    try:
        metrics, *_figures = evaluate_model(champion.model, test_set, evaluation)
    except ValueError as exc:
        raise ValueError(
            f"The champion {name} version {version.version} cannot be scored on the test "
            f"set: {exc} Champion and challenger must be compared on the same images; if the "
            "data set changed on purpose, move the alias by hand (mlflow ui) or use a new "
            "retrain.registered_model_name."
        ) from exc
    return {**metrics, "version": str(version.version)}


# ---- 4. decide -------------------------------------------------------------------------------
def decide_promotion(
    challenger_metrics: dict[str, Any],
    champion_metrics: dict[str, Any],
    incoming: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """Promote the challenger only if it beats the champion by ``retrain.min_improvement``.

    Both must reach ``retrain.min_score`` (so a broken first model does not become champion).
    With no champion, a challenger that reaches ``min_score`` is promoted.

    Returns:
        ``action`` (promote | keep | skip), ``reason``, ``metric``, both scores.
    """
    metric = retrain.get("metric", "test_accuracy")
    higher = bool(retrain.get("greater_is_better", True))
    margin = float(retrain.get("min_improvement", 0.0))
    floor = retrain.get("min_score")
    decision = {
        "metric": metric,
        "greater_is_better": higher,
        "min_improvement": margin,
        "min_score": floor,
        "challenger_score": challenger_metrics.get(metric),
        "champion_score": champion_metrics.get(metric),
        "champion_version": champion_metrics.get("version"),
        "new_images": len(incoming["files"]),
    }
    if not has_new_images(incoming, retrain):
        return {**decision, "action": SKIP, "reason": "no new images"}
    challenger = decision["challenger_score"]
    champion = decision["champion_score"]
    if challenger is None:
        raise ValueError(
            f"retrain.metric '{metric}' is not among the evaluation metrics "
            f"({', '.join(sorted(k for k in challenger_metrics if k.startswith('test_')))})."
        )

    def better(a: float, b: float, by: float = 0.0) -> bool:
        return a >= b + by if higher else a <= b - by

    if floor is not None and not better(challenger, float(floor)) and champion is None:
        action, reason = (
            KEEP,
            f"no champion yet, and the challenger's {metric} {challenger:.4f} misses "
            f"retrain.min_score {floor}, so it is no first champion; lower min_score (e.g. "
            '--params="retrain.min_score=0") or train longer (retrain.training.epochs)',
        )
    elif floor is not None and not better(challenger, float(floor)):
        action, reason = KEEP, f"challenger {metric} {challenger:.4f} misses min_score {floor}"
    elif champion is None:
        action, reason = PROMOTE, "no champion yet"
    elif better(challenger, champion, margin) and challenger != champion:
        action, reason = (
            PROMOTE,
            f"challenger {metric} {challenger:.4f} beats champion {champion:.4f} by "
            f"at least {margin}",
        )
    else:
        action, reason = (
            KEEP,
            f"challenger {metric} {challenger:.4f} does not beat champion {champion:.4f} "
            f"by {margin}",
        )
    logger.info("Decision: %s (%s).", action.upper(), reason)
    return {**decision, "action": action, "reason": reason}


# ---- 5. register -----------------------------------------------------------------------------
def register_challenger(
    *,
    challenger: dict[str, Any],
    challenger_metrics: dict[str, Any],
    decision: dict[str, Any],
    incoming: dict[str, Any],
    evaluation: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """Log the run to MLflow, register the challenger and move the aliases.

    The challenger becomes a new version of ``retrain.registered_model_name`` (a serving
    pyfunc, see :mod:`image_classifiers.serving`) with alias ``challenger``; ``champion``
    moves to it only when the decision is to promote. The MLflow run records the decision,
    both scores and the data added.

    Returns:
        The decision plus ``version`` and ``mlflow_run_id``.
    """
    record = {**decision, "version": None, "mlflow_run_id": None}
    with _mlflow_run(retrain) as run:
        if run is not None:
            record["mlflow_run_id"] = run.info.run_id
            _log_decision(decision, challenger_metrics, incoming)
        if decision["action"] == SKIP:
            return record
        name = retrain["registered_model_name"]
        with tempfile.TemporaryDirectory(prefix="challenger-") as tmp:
            path = Path(tmp) / "challenger.keras"
            challenger["model"].save(path)
            info = log_classifier(
                path,
                list(incoming["classes"]),
                name="challenger",
                registered_model_name=name,
                threshold=float(evaluation.get("threshold", 0.5)),
                batch_size=int(evaluation.get("batch_size", 32)),
            )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in _version_tags(decision, incoming).items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(
            name, retrain.get("challenger_alias", "challenger"), version
        )
        if decision["action"] == PROMOTE:
            client.set_registered_model_alias(
                name, retrain.get("champion_alias", "champion"), version
            )
            logger.info("Promoted %s version %s to champion.", name, version)
        elif decision["champion_version"] is None:
            logger.warning(
                "Registered %s version %s as challenger only: %s.",
                name,
                version,
                decision["reason"],
            )
        else:
            logger.info(
                "Registered %s version %s as challenger; the champion (version %s) stays.",
                name,
                version,
                decision["champion_version"],
            )
        mlflow.set_tag("retrain.version", version)
        record["version"] = version
    return record


@contextmanager
def _mlflow_run(retrain: dict[str, Any]) -> Iterator[Any]:
    """The active run (kedro-mlflow opens one per kedro run), or a run of our own."""
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    if retrain.get("experiment"):
        mlflow.set_experiment(retrain["experiment"])
    with mlflow.start_run(run_name="retrain") as run:
        yield run


def _log_decision(
    decision: dict[str, Any], challenger_metrics: dict[str, Any], incoming: dict[str, Any]
) -> None:
    counts = Counter(incoming["classes"][i] for i in incoming["labels"])
    mlflow.set_tags(
        {
            "retrain.action": decision["action"],
            "retrain.reason": decision["reason"][:5000],
            "retrain.champion_version": str(decision["champion_version"]),
        }
    )
    metrics = {
        "retrain.new_images": len(incoming["files"]),
        "retrain.duplicates": len(incoming["duplicates"]),
        "retrain.rejected": len(incoming["rejected"]),
        **{f"retrain.new_images.{c}": counts[c] for c in incoming["classes"]},
    }
    for role in ("challenger", "champion"):
        if decision[f"{role}_score"] is not None:
            metrics[f"retrain.{role}.{decision['metric']}"] = float(decision[f"{role}_score"])
    mlflow.log_metrics(metrics)
    mlflow.log_dict(
        {
            "decision": decision,
            "challenger_metrics": challenger_metrics,
            "added": [
                {"file": f, "sha256": h}
                for f, h in zip(incoming["files"], incoming["sha256"], strict=True)
            ],
            "duplicates": incoming["duplicates"],
            "rejected": incoming["rejected"],
        },
        "retrain/decision.json",
    )


def _version_tags(decision: dict[str, Any], incoming: dict[str, Any]) -> dict[str, str]:
    return {
        "retrain.action": decision["action"],
        "retrain.metric": decision["metric"],
        "retrain.challenger_score": str(decision["challenger_score"]),
        "retrain.champion_score": str(decision["champion_score"]),
        "retrain.champion_version": str(decision["champion_version"]),
        "retrain.new_images": str(len(incoming["files"])),
        "retrain.incoming_run": incoming["run_id"],
    }


# ---- 6. pool and incoming files --------------------------------------------------------------
def update_training_pool(
    training_pool: dict[str, Any], incoming: dict[str, Any], promotion: dict[str, Any]
) -> dict[str, Any]:
    """The pool with the new images added (after the decision, whatever it was).

    ``promotion`` is only an input so that this runs after the model is registered.
    """
    if not len(incoming["files"]):
        return training_pool
    runs = [incoming["run_id"]] * len(incoming["files"])
    parts = [p for p in (training_pool, incoming) if len(p["files"])]
    pool = {
        "images": np.concatenate([p["images"] for p in parts]),
        "labels": np.concatenate([np.asarray(p["labels"], dtype=np.int32) for p in parts]),
        "classes": list(incoming["classes"]),
        "files": [*training_pool["files"], *incoming["files"]],
        "sha256": [*training_pool["sha256"], *incoming["sha256"]],
        "runs": [*training_pool["runs"], *runs],
    }
    logger.info(
        "Training pool: %d images (+%d from run %s).",
        len(pool["files"]),
        len(incoming["files"]),
        incoming["run_id"],
    )
    return pool


def archive_incoming(
    training_pool: dict[str, Any],
    incoming: dict[str, Any],
    promotion: dict[str, Any],
    retrain: dict[str, Any],
) -> dict[str, Any]:
    """Move the files this run used or set aside out of the incoming folder; report the run.

    Runs last: ``training_pool`` (the saved, updated pool) is an input so that files move
    only once their images are safely in the pool. Added files go to
    ``<processed_dir>/<run id>/``, duplicates and rejected files to its ``duplicates/`` and
    ``rejected/`` sub-folders, keeping their relative paths.

    Returns:
        The run's report (also logged to MLflow when a run is open).
    """
    target = Path(retrain["processed_dir"]) / incoming["run_id"]
    moved = 0
    for group, items in (
        ("", incoming["sources"]),
        ("duplicates", incoming["duplicates"]),
        ("rejected", incoming["rejected"]),
    ):
        for item in items:
            if "path" in item:
                moved += _move_aside(Path(item["path"]), target / group / item["file"])
    if moved:
        logger.info("Moved %d incoming files to %s.", moved, target)
    report = {
        "run_id": incoming["run_id"],
        "source": incoming["source"],
        "processed_dir": str(target) if moved else None,
        "new_images": len(incoming["files"]),
        "new_per_class": dict(Counter(incoming["classes"][i] for i in incoming["labels"])),
        "duplicates": incoming["duplicates"],
        "rejected": incoming["rejected"],
        "pool_images": len(training_pool["files"]),
        **{k: promotion[k] for k in ("action", "reason", "metric", "version", "mlflow_run_id")},
        "challenger_score": promotion["challenger_score"],
        "champion_score": promotion["champion_score"],
        "champion_version": promotion["champion_version"],
    }
    if promotion["mlflow_run_id"] and mlflow.active_run() is None:
        with mlflow.start_run(run_id=promotion["mlflow_run_id"]):
            mlflow.log_dict(report, "retrain/report.json")
    elif mlflow.active_run() is not None:
        mlflow.log_dict(report, "retrain/report.json")
    return report


def _move_aside(source: Path, destination: Path) -> int:
    """Move one file (1) or report that it is gone already (0, e.g. after a crash)."""
    if not source.exists():
        return 0
    destination = destination.with_name(_safe_name(destination.name))
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except OSError:  # another file system: copy, then remove
        shutil.copy2(source, destination)
        source.unlink()
    return 1


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name) or "file"
