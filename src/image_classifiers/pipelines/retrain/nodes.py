"""Retraining with champion/challenger promotion: collect -> train -> decide -> register -> archive.

**The pool is the processed folder.** A file joins the pool by being moved into
``<processed_dir>/<run id>/`` -- the last step, after the challenger trained on it is
registered -- and every run reads the pool back from there, so there is no second copy to
keep in step. Before the last step the incoming folder is untouched (a failed run is simply
run again); a file already moved is in the pool, and a rerun knows it by its SHA-256.
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
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import mlflow
import numpy as np

from image_classifiers.images import UnreadableImageError, decode_image
from image_classifiers.live_metrics import MlflowEpochMetrics
from image_classifiers.params import (
    AugmentationParams,
    EvaluationParams,
    RetrainParams,
    TrainingParams,
)
from image_classifiers.pipelines.model_training.nodes import build_model, evaluate_model
from image_classifiers.pipelines.predict.sources import ImageFile, iter_image_files
from image_classifiers.serving import ModelNotFoundError, load_classifier, log_classifier
from image_classifiers.training import fit_model

logger = logging.getLogger(__name__)

PROMOTE, KEEP = "promote", "keep"
#: Sub-folders of a run's processed folder that hold files not added to the pool.
SET_ASIDE = ("duplicates", "rejected")


# ---- 1. collect ------------------------------------------------------------------------------
def collect_images(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    retrain: RetrainParams,
) -> dict[str, Any]:
    """The pool and the new labeled images, validated and decoded at ``train_set``'s size.

    A file's class is its folder (``incoming/dog/x.jpg``) or its Kaggle prefix
    (``dog.12.jpg``). A new file is set aside when it cannot be decoded or has no known class
    (``rejected``), or when it is in the pool already or the same picture is in a fixed split
    (``duplicates``): a rerun adds nothing twice and no test image leaks into training.

    Returns:
        ``images``, ``labels``, ``classes``, ``files``, ``sha256`` of the new images, the
        ``sources`` to move into the pool, ``rejected``, ``duplicates``, ``run_id`` (this run's
        processed folder) and ``pool`` (``images``, ``labels``, ``files``, ``sha256``).

    Raises:
        ValueError: With ``on_bad_image: fail``, if any new file is unreadable or unlabeled.
    """
    classes = [str(c) for c in train_set["classes"]]
    size = tuple(int(v) for v in train_set["images"].shape[1:3])
    source = Path(retrain.archive or retrain.incoming_dir)
    fixed = _pixel_hashes(train_set, validation_set, test_set)
    pool = _read_pool(Path(retrain.processed_dir), classes, size, fixed)
    result: dict[str, Any] = {
        "run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "source": str(source),
        "classes": classes,
        "pool": pool,
        "rejected": [],
        "duplicates": [],
    }
    files = iter_image_files(source) if source.exists() else []
    new = _accept(files, classes, size, fixed, known=set(pool["sha256"]), report=result)
    if result["rejected"] and retrain.on_bad_image == "fail":
        shown = "; ".join(f"{r['file']}: {r['reason']}" for r in result["rejected"][:5])
        raise ValueError(
            f"{len(result['rejected'])} incoming files cannot be used ({shown}). Fix or "
            "remove them, or set retrain.on_bad_image: skip to set them aside."
        )
    if source.is_file():  # an archive is moved aside as a whole
        new["sources"] = [{"file": source.name, "path": str(source)}]
    result.update(new)
    counts = Counter(classes[i] for i in result["labels"])
    logger.info(
        "Incoming from '%s': %d new images (%s), %d already known, %d rejected; pool: %d.",
        source,
        len(result["files"]),
        ", ".join(f"{c}: {counts[c]}" for c in classes),
        len(result["duplicates"]),
        len(result["rejected"]),
        len(pool["files"]),
    )
    for item in result["rejected"][:10]:
        logger.warning("Set aside %s: %s", item["file"], item["reason"])
    return result


def _read_pool(
    processed: Path, classes: list[str], size: tuple[int, int], fixed: dict[str, str]
) -> dict[str, Any]:
    """Every image earlier runs moved into ``processed/<run id>/``, by the rules new files meet."""
    runs = sorted(p for p in processed.iterdir() if p.is_dir()) if processed.is_dir() else []
    files = [
        f for run in runs for f in iter_image_files(run) if f.name.split("/")[0] not in SET_ASIDE
    ]
    pool = _accept(
        files, classes, size, fixed, known=set(), report={"rejected": [], "duplicates": []}
    )
    del pool["sources"]
    return pool


def _accept(
    files: Iterable[ImageFile],
    classes: list[str],
    size: tuple[int, int],
    fixed: dict[str, str],
    *,
    known: set[str],
    report: dict[str, Any],
) -> dict[str, Any]:
    """The decoded images of ``files`` that are usable and new; the others go to ``report``."""
    images: list[np.ndarray] = []
    accepted: dict[str, list[Any]] = {"files": [], "labels": [], "sha256": [], "sources": []}
    for file in files:
        record = {"file": file.name}
        if file.location is not None:
            record["path"] = str(file.location)
        label = _class_of(file, classes)
        digest = hashlib.sha256(file.data).hexdigest() if file.data is not None else None
        if label is None:
            report["rejected"].append({**record, "reason": _unknown_class(file, classes)})
            continue
        if digest is None:
            report["rejected"].append({**record, "reason": file.error or "unreadable"})
            continue
        if digest in known:
            report["duplicates"].append({**record, "reason": "already in the training pool"})
            continue
        try:
            image = decode_image(file.data, size)
        except UnreadableImageError as exc:
            report["rejected"].append({**record, "reason": exc.reason})
            continue
        split = fixed.get(_pixel_hash(image))
        if split is not None:
            report["duplicates"].append({**record, "reason": f"the same picture is in {split}"})
            continue
        known.add(digest)  # the same file twice in one delivery counts once
        images.append(image)
        accepted["files"].append(file.name)
        accepted["labels"].append(classes.index(label))
        accepted["sha256"].append(digest)
        accepted["sources"].append(record)
    return {
        **accepted,
        "images": np.stack(images) if images else np.zeros((0, *size, 3), dtype=np.uint8),
        "labels": np.asarray(accepted["labels"], dtype=np.int32),
    }


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
    return hashlib.sha256(image.tobytes()).hexdigest()  # tobytes is C-ordered for any view


def _pixel_hashes(*image_sets: dict[str, Any]) -> dict[str, str]:
    names = ("train_set", "validation_set", "test_set")
    return {
        _pixel_hash(image): name
        for name, image_set in zip(names, image_sets, strict=True)
        for image in image_set["images"]
    }


# ---- 2. train --------------------------------------------------------------------------------
def train_challenger(
    *,
    train_set: dict[str, Any],
    images: dict[str, Any],
    validation_set: dict[str, Any],
    models: dict[str, Any],
    augmentation: AugmentationParams | None,
    training: TrainingParams,
    retrain: RetrainParams,
) -> dict[str, keras.Model]:
    """The challengers by model name: ``{}`` unless new images came in or ``retrain.force``.

    The one place that decides whether this run trains (see ``pipeline.py``). The model is
    ``models[retrain.model]``, trained on ``train_set`` + the pool + the new images with
    ``training`` except the keys ``retrain.training`` sets.
    """
    if not len(images["files"]) and not retrain.force:
        logger.info(
            "No new images: no challenger is trained and nothing is registered "
            "(retrain.force=true trains one anyway)."
        )
        return {}
    options = training.merged(retrain.training)
    combined = training_set(train_set, images)
    logger.info(
        "Training challenger '%s' on %d images (%d from train_set, %d from the pool, %d new).",
        retrain.model,
        len(combined["labels"]),
        len(train_set["labels"]),
        len(images["pool"]["labels"]),
        len(images["labels"]),
    )
    model = build_model(combined, retrain.model_options(models), augmentation, options)
    model, _history = fit_model(
        model, combined, validation_set, options, callbacks=[MlflowEpochMetrics()]
    )
    return {retrain.model: model}


def training_set(train_set: dict[str, Any], images: dict[str, Any]) -> dict[str, Any]:
    """``train_set``, the pool and the new images as one image set."""
    parts = [p for p in (train_set, images["pool"], images) if len(p["files"])]
    return {
        "images": np.concatenate([np.asarray(p["images"]) for p in parts]),
        "labels": np.concatenate([np.asarray(p["labels"], dtype=np.int32) for p in parts]),
        "classes": list(train_set["classes"]),
        "files": [str(f) for p in parts for f in p["files"]],
    }


# ---- 3. decide -------------------------------------------------------------------------------
def decide_promotion(
    challengers: dict[str, keras.Model],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Each challenger and the champion scored on the fixed test set, and the decision.

    Returns:
        Per challenger: :func:`promotion_rule`'s decision and ``challenger_metrics``.
    """
    decisions = {}
    for name, model in challengers.items():
        metrics, *_figures = evaluate_model(model, test_set, evaluation)
        champion = _champion_metrics(test_set, evaluation, retrain)
        decisions[name] = {
            **promotion_rule(metrics, champion, retrain),
            "challenger_metrics": metrics,
        }
    return decisions


def _champion_metrics(
    test_set: dict[str, Any], evaluation: EvaluationParams, retrain: RetrainParams
) -> dict[str, Any]:
    """The current champion's metrics on the test set, with its ``version`` (``{}``: none)."""
    name, alias = retrain.registered_model_name, retrain.champion_alias
    try:
        champion = load_classifier(f"models:/{name}@{alias}")
    except ModelNotFoundError:
        logger.info("No champion yet ('%s@%s' does not exist).", name, alias)
        return {}
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
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


def promotion_rule(
    challenger_metrics: dict[str, Any], champion_metrics: dict[str, Any], retrain: RetrainParams
) -> dict[str, Any]:
    """Promote only if the challenger beats the champion by ``retrain.min_improvement``.

    Both must reach ``retrain.min_score``, so a broken first model never becomes champion;
    with no champion, reaching ``min_score`` is enough. Ties keep the champion.
    """
    metric, higher = retrain.metric, retrain.greater_is_better
    margin, floor = float(retrain.min_improvement), retrain.min_score
    challenger = challenger_metrics.get(metric)
    champion = champion_metrics.get(metric)
    if challenger is None:
        raise ValueError(
            f"retrain.metric '{metric}' is not among the evaluation metrics "
            f"({', '.join(sorted(k for k in challenger_metrics if k.startswith('test_')))})."
        )

    def better(a: float, b: float, by: float = 0.0) -> bool:
        return a >= b + by if higher else a <= b - by

    misses_floor = floor is not None and not better(challenger, float(floor))
    if misses_floor and champion is None:
        action, reason = (
            KEEP,
            f"no champion yet, and the challenger's {metric} {challenger:.4f} misses "
            f"retrain.min_score {floor}, so it is no first champion; lower min_score (e.g. "
            '--params="retrain.min_score=0") or train longer (retrain.training.epochs)',
        )
    elif misses_floor:
        action, reason = KEEP, f"challenger {metric} {challenger:.4f} misses min_score {floor}"
    elif champion is None:
        action, reason = PROMOTE, "no champion yet"
    elif better(challenger, champion, margin) and challenger != champion:
        action = PROMOTE
        reason = f"challenger {metric} {challenger:.4f} beats champion {champion:.4f} by {margin}"
    else:
        action = KEEP
        reason = f"challenger {metric} {challenger:.4f} does not beat {champion:.4f} by {margin}"
    logger.info("Decision: %s (%s).", action.upper(), reason)
    return {
        "action": action,
        "reason": reason,
        "metric": metric,
        "challenger_score": challenger,
        "champion_score": champion,
        "champion_version": champion_metrics.get("version"),
    }


# ---- 4. register -----------------------------------------------------------------------------
def register_challenger(
    *,
    challengers: dict[str, keras.Model],
    decisions: dict[str, dict[str, Any]],
    images: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Register each challenger in the run kedro-mlflow opened and move the aliases.

    A challenger becomes a new version of ``retrain.registered_model_name`` (a serving
    pyfunc, :mod:`image_classifiers.serving`) with alias ``challenger``; ``champion`` moves to
    it only on promotion. MLflow owns versions and aliases; the run gets the decision's tags.

    Returns:
        Per challenger: the decision (without the metrics), ``version`` and ``mlflow_run_id``.
    """
    name, client = retrain.registered_model_name, mlflow.MlflowClient()
    run = mlflow.active_run()
    registrations = {}
    for model_name, model in challengers.items():
        decision = {k: v for k, v in decisions[model_name].items() if k != "challenger_metrics"}
        with tempfile.TemporaryDirectory(prefix="challenger-") as tmp:
            model.save(Path(tmp) / "challenger.keras")
            info = log_classifier(
                Path(tmp) / "challenger.keras",
                list(images["classes"]),
                name="challenger",
                registered_model_name=name,
                threshold=evaluation.threshold,
                batch_size=evaluation.batch_size,
            )
        version = str(info.registered_model_version)
        tags = {f"retrain.{k}": str(v) for k, v in decision.items() if k != "reason"}
        tags["retrain.new_images"] = str(len(images["files"]))
        for key, value in {**tags, "retrain.incoming_run": images["run_id"]}.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, retrain.challenger_alias, version)
        if decision["action"] == PROMOTE:
            client.set_registered_model_alias(name, retrain.champion_alias, version)
        logger.info("Registered %s version %s: %s.", name, version, decision["reason"])
        mlflow.set_tags({**tags, "retrain.version": version, "retrain.reason": decision["reason"]})
        scores = {role: decision[f"{role}_score"] for role in ("challenger", "champion")}
        mlflow.log_metrics(
            {
                "retrain.new_images": len(images["files"]),
                "retrain.duplicates": len(images["duplicates"]),
                "retrain.rejected": len(images["rejected"]),
                **{
                    f"retrain.{r}.{decision['metric']}": s
                    for r, s in scores.items()
                    if s is not None
                },
            }
        )
        registrations[model_name] = {
            **decision,
            "version": version,
            "mlflow_run_id": run and run.info.run_id,
        }
    return registrations


# ---- 5. archive: the new files join the pool -------------------------------------------------
def archive_incoming(
    images: dict[str, Any], registrations: dict[str, dict[str, Any]], retrain: RetrainParams
) -> dict[str, Any]:
    """Move the files this run used or set aside into its processed folder; report the run.

    Takes the registrations so that files move only once the challenger trained on them is
    registered. Added files go to ``<processed_dir>/<run id>/`` (the pool the next run
    reads), duplicates and rejected files to its ``duplicates/`` and ``rejected/``.

    Returns:
        The run's report (the catalog also logs it to MLflow).
    """
    target = Path(retrain.processed_dir) / images["run_id"]
    moved = 0
    for group, items in (
        ("", images["sources"]),
        ("duplicates", images["duplicates"]),
        ("rejected", images["rejected"]),
    ):
        for item in items:
            if "path" in item:
                moved += _move_aside(Path(item["path"]), target / group / item["file"])
    if moved:
        logger.info("Moved %d incoming files to %s.", moved, target)
    return {
        "run_id": images["run_id"],
        "source": images["source"],
        "processed_dir": str(target) if moved else None,
        "new_images": len(images["files"]),
        "new_per_class": dict(Counter(images["classes"][i] for i in images["labels"])),
        "duplicates": images["duplicates"],
        "rejected": images["rejected"],
        "pool_images": len(images["pool"]["files"]) + len(images["files"]),
        "added": [
            {"file": f, "sha256": h} for f, h in zip(images["files"], images["sha256"], strict=True)
        ],
        "challengers": registrations,
    }


def _move_aside(source: Path, destination: Path) -> int:
    """Move one file (1) or report that it is gone already (0, e.g. after a crash)."""
    if not source.exists():
        return 0
    destination = destination.with_name(re.sub(r"[^\w.\-]", "_", destination.name) or "file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except OSError:  # another file system: copy, then remove
        shutil.copy2(source, destination)
        source.unlink()
    return 1
