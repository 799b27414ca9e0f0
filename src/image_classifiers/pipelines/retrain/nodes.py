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

from image_classifiers.core.params import (
    AugmentationParams,
    EvaluationParams,
    RetrainParams,
    TrainingParams,
)
from image_classifiers.core.training import fit_model
from image_classifiers.live_metrics import MlflowEpochMetrics
from image_classifiers.pipelines.model_training.nodes import build_model, evaluate_model
from image_classifiers.pipelines.predict.sources import ImageFile, iter_image_files
from image_classifiers.serving import ModelNotFoundError, load_classifier, log_classifier

logger = logging.getLogger(__name__)

PROMOTE, KEEP = "promote", "keep"
#: Sub-folders of a run's processed folder that hold files not added to the pool.
SET_ASIDE = ("duplicates", "rejected")
SPLITS = ("train_set", "validation_set", "test_set")


def collect_images(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    retrain: RetrainParams,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pool and the new labeled images, validated and decoded at ``train_set``'s size.

    A file's class is its folder (``incoming/dog/x.jpg``) or its Kaggle prefix
    (``dog.12.jpg``). A new file is set aside when it cannot be decoded or has no known class
    (``rejected``), or when it is in the pool already or the same picture is in a fixed split
    (``duplicates``): a rerun adds nothing twice and no test image leaks into training.
    The delivery lists ``pool`` and ``added`` (``file``, ``sha256``, ``label``, ``path`` on
    disk if any), ``duplicates`` and ``rejected`` (``file``, ``reason``, ``path``).
    """
    classes = [str(c) for c in train_set["classes"]]
    size = tuple(int(v) for v in train_set["images"].shape[1:3])
    source = Path(retrain.archive or retrain.incoming_dir)
    fixed = {
        _pixel_hash(image): name
        for name, split in zip(SPLITS, (train_set, validation_set, test_set), strict=True)
        for image in split["images"]
    }
    runs = sorted(p for p in Path(retrain.processed_dir).glob("*") if p.is_dir())
    pooled = (
        f for run in runs for f in iter_image_files(run) if f.name.split("/")[0] not in SET_ASIDE
    )
    ignored: dict[str, list] = {"rejected": [], "duplicates": []}  # told when they came in
    pool, pool_images = _accept(pooled, classes, size, fixed, known=set(), report=ignored)
    delivery: dict[str, Any] = {
        "run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "source": str(source),
        "classes": classes,
        "pool": [{"file": r["file"], "sha256": r["sha256"]} for r in pool],
        "rejected": [],
        "duplicates": [],
    }
    files = iter_image_files(source) if source.exists() else []
    known = {r["sha256"] for r in pool}
    added, new_images = _accept(files, classes, size, fixed, known=known, report=delivery)
    delivery["added"] = added
    if delivery["rejected"] and retrain.on_bad_image == "fail":
        shown = "; ".join(f"{r['file']}: {r['reason']}" for r in delivery["rejected"][:5])
        raise ValueError(
            f"{len(delivery['rejected'])} incoming files cannot be used ({shown}). Fix or "
            "remove them, or set retrain.on_bad_image: skip to set them aside."
        )
    counts = Counter(classes[r["label"]] for r in added)
    logger.info(
        "Incoming from '%s': %d new images (%s), %d already known, %d rejected; pool: %d.",
        source,
        len(added),
        ", ".join(f"{c}: {counts[c]}" for c in classes),
        len(delivery["duplicates"]),
        len(delivery["rejected"]),
        len(pool),
    )
    for item in delivery["rejected"][:10]:
        logger.warning("Set aside %s: %s", item["file"], item["reason"])
    images = {
        "images": np.concatenate([pool_images, new_images]),
        "labels": np.asarray([r["label"] for r in pool + added], dtype=np.int32),
        "classes": classes,
        "files": [r["file"] for r in pool + added],
    }
    return images, delivery


def _accept(
    files: Iterable[ImageFile],
    classes: list[str],
    size: tuple[int, int],
    fixed: dict[str, str],
    *,
    known: set[str],
    report: dict[str, Any],
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The records and decoded images of ``files`` that are usable and new; the others go
    to ``report``."""
    records: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    for file in files:
        record: dict[str, Any] = {"file": file.name}
        if file.location is not None:
            record["path"] = str(file.location)
        label = _class_of(file, classes)
        digest = hashlib.sha256(file.data).hexdigest() if file.data is not None else None
        if label is None:
            reason = (
                f"no class: put it in a folder named after its class ({', '.join(classes)}), "
                f"e.g. incoming/{classes[0]}/{PurePosixPath(file.name).name}"
            )
            report["rejected"].append({**record, "reason": reason})
            continue
        if digest in known:
            report["duplicates"].append({**record, "reason": "already in the training pool"})
            continue
        image = file.decoded(size)
        if isinstance(image, str):  # why it cannot be decoded
            report["rejected"].append({**record, "reason": image})
            continue
        split = fixed.get(_pixel_hash(image))
        if split is not None:
            report["duplicates"].append({**record, "reason": f"the same picture is in {split}"})
            continue
        known.add(digest)  # the same file twice in one delivery counts once
        images.append(image)
        records.append({**record, "sha256": digest, "label": classes.index(label)})
    return records, np.stack(images) if images else np.zeros((0, *size, 3), dtype=np.uint8)


def _class_of(file: ImageFile, classes: list[str]) -> str | None:
    if file.parent in classes:
        return file.parent
    prefix = PurePosixPath(file.name).name.split(".", 1)[0]
    return prefix if prefix in classes else None


def _pixel_hash(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()  # tobytes is C-ordered for any view


def train_challenger(
    *,
    train_set: dict[str, Any],
    images: dict[str, Any],
    delivery: dict[str, Any],
    validation_set: dict[str, Any],
    models: dict[str, Any],
    augmentation: AugmentationParams | None,
    training: TrainingParams,
    retrain: RetrainParams,
) -> dict[str, keras.Model]:
    """The challengers by model name: ``{}`` unless new images came in or ``retrain.force``.

    The one place that decides whether this run trains (see ``pipeline.py``). The model is
    ``models[retrain.model]``, trained on ``train_set`` + the pool and new ``images`` with
    ``training`` except the keys ``retrain.training`` sets.
    """
    if not delivery["added"] and not retrain.force:
        logger.info(
            "No new images: no challenger is trained and nothing is registered "
            "(retrain.force=true trains one anyway)."
        )
        return {}
    options = training.merged(retrain.training)
    combined = {
        "images": np.concatenate([train_set["images"], images["images"]]),
        "labels": np.concatenate([train_set["labels"], images["labels"]]).astype(np.int32),
        "classes": list(train_set["classes"]),
        "files": [*map(str, train_set["files"]), *images["files"]],
    }
    logger.info(
        "Training challenger '%s' on %d images: train_set, %d in the pool, %d new.",
        retrain.model,
        len(combined["labels"]),
        len(delivery["pool"]),
        len(delivery["added"]),
    )
    model = build_model(combined, retrain.model_options(models), augmentation, options)
    model, _history = fit_model(
        model, combined, validation_set, options, callbacks=[MlflowEpochMetrics()]
    )
    return {retrain.model: model}


def decide_promotion(
    challengers: dict[str, keras.Model],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Per challenger: :func:`promotion_rule`'s decision on the fixed test set, and its
    ``challenger_metrics``."""
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
    """The current champion's metrics on the test set, with its ``version`` (``{}``: none).

    Loaded here, not by kedro-mlflow's ``MlflowModelRegistryDataset`` as a node input: a
    catalog input must exist, and there is no champion before the first promotion.
    """
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

    if floor is not None and not better(challenger, float(floor)):
        action = KEEP
        reason = f"challenger {metric} {challenger:.4f} misses retrain.min_score {floor}"
        if champion is None:
            reason += (
                ", and there is no champion yet: lower min_score (e.g. "
                '--params="retrain.min_score=0") or train longer (retrain.training.epochs)'
            )
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


def register_challenger(
    *,
    challengers: dict[str, keras.Model],
    decisions: dict[str, dict[str, Any]],
    delivery: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Register each challenger in the run kedro-mlflow opened and move the aliases.

    A challenger becomes a new version of ``retrain.registered_model_name`` (a serving
    pyfunc, :mod:`image_classifiers.serving`) with alias ``challenger``; ``champion`` moves to
    it only on promotion. MLflow owns versions and aliases; the run gets the decision's tags.
    """
    name, run = retrain.registered_model_name, mlflow.active_run()
    run_id = run.info.run_id if run else None
    registrations = {}
    for model_name, model in challengers.items():
        decision = {k: v for k, v in decisions[model_name].items() if k != "challenger_metrics"}
        with tempfile.TemporaryDirectory(prefix="challenger-") as tmp:
            model.save(Path(tmp) / "challenger.keras")
            info = log_classifier(
                Path(tmp) / "challenger.keras",
                delivery["classes"],
                name="challenger",
                registered_model_name=name,
                threshold=evaluation.threshold,
                batch_size=evaluation.batch_size,
            )
        version, client = str(info.registered_model_version), mlflow.MlflowClient()
        tags = {f"retrain.{k}": str(v) for k, v in decision.items()}
        tags |= {"retrain.version": version, "retrain.incoming_run": delivery["run_id"]}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, retrain.challenger_alias, version)
        if decision["action"] == PROMOTE:
            client.set_registered_model_alias(name, retrain.champion_alias, version)
        logger.info("Registered %s version %s: %s.", name, version, decision["reason"])
        mlflow.set_tags(tags)
        counts = {k: len(delivery[k]) for k in SET_ASIDE} | {"new_images": len(delivery["added"])}
        per_class = Counter(delivery["classes"][r["label"]] for r in delivery["added"])
        counts |= {f"new_images.{c}": per_class[c] for c in delivery["classes"]}
        scores = {role: decision[f"{role}_score"] for role in ("challenger", "champion")}
        mlflow.log_metrics(
            {f"retrain.{k}": v for k, v in counts.items()}
            | {f"retrain.{r}.{decision['metric']}": v for r, v in scores.items() if v is not None}
        )
        registrations[model_name] = {**decision, "version": version, "mlflow_run_id": run_id}
    return registrations


def archive_incoming(
    delivery: dict[str, Any], registrations: dict[str, dict[str, Any]], retrain: RetrainParams
) -> dict[str, Any]:
    """Move the files this run used or set aside into its processed folder; report the run.

    Takes the registrations so that files move only once the challenger trained on them is
    registered. Added files go to ``<processed_dir>/<run id>/`` (the pool the next run
    reads; an archive as a whole), duplicates and rejected files to its ``duplicates/`` and
    ``rejected/``. The report is also logged to MLflow (by the catalog).
    """
    target = Path(retrain.processed_dir) / delivery["run_id"]
    source = Path(delivery["source"])
    moved = _move_aside(source, target / source.name) if source.is_file() else 0
    for group in ("added", *SET_ASIDE):
        for item in delivery[group]:
            if "path" in item:
                folder = target if group == "added" else target / group
                moved += _move_aside(Path(item["path"]), folder / item["file"])
    if moved:
        logger.info("Moved %d incoming files to %s.", moved, target)
    classes = delivery["classes"]
    return {
        "run_id": delivery["run_id"],
        "source": delivery["source"],
        "processed_dir": str(target) if moved else None,
        "new_images": len(delivery["added"]),
        "new_per_class": dict(Counter(classes[r["label"]] for r in delivery["added"])),
        "pool_images": len(delivery["pool"]) + len(delivery["added"]),
        **{key: delivery[key] for key in ("added", "duplicates", "rejected")},
        "challengers": registrations,
    }


def _move_aside(source: Path, destination: Path) -> int:
    """Move one file (1) or report that it is gone already (0, e.g. after a crash)."""
    if not source.exists():
        return 0
    destination = destination.with_name(re.sub(r"[^\w.\-]", "_", destination.name) or "file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, destination)  # a rename, or copy and remove across file systems
    return 1
