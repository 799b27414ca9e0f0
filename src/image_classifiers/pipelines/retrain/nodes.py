"""Retraining with champion/challenger promotion, top to bottom.

    collect:  the pool (files earlier runs accepted) + new labeled images, validated, deduped
    train:    a challenger on train_set + pool + new images (none if nothing is new)
    decide:   challenger and champion scored on the fixed test_set -> promote | keep | skip
    register: the challenger as a new version (alias ``challenger``; ``champion`` on promote)
    archive:  the run's files moved from incoming to ``processed_dir/<run id>/``

**The pool is the processed folder.** A file joins the pool by being moved into
``<processed_dir>/<run id>/`` -- the last step, after the challenger trained on it is
registered -- and every run reads the pool back from there (decoded at ``train_set``'s size),
so there is no second copy to keep in step and no dataset written and read under two names.
Nothing is lost or counted twice when a run fails: before the last step the incoming folder
is untouched (the next run starts again), and a file already moved is in the pool, which a
rerun recognises by its SHA-256 (a delivery of it again is a duplicate, never added twice).
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
import numpy as np

from image_classifiers.images import UnreadableImageError, decode_image
from image_classifiers.params import (
    AugmentationParams,
    EvaluationParams,
    RetrainParams,
    TrainingParams,
)
from image_classifiers.pipelines.model_training.nodes import (
    build_model,
    evaluate_model,
    train_model,
)
from image_classifiers.pipelines.predict.sources import ImageFile, iter_image_files
from image_classifiers.serving import alias_version, load_classifier, log_classifier

logger = logging.getLogger(__name__)

PROMOTE, KEEP, SKIP = "promote", "keep", "skip"
#: Sub-folders of a run's processed folder that hold files not added to the pool.
SET_ASIDE = ("duplicates", "rejected")


# ---- 1. collect ------------------------------------------------------------------------------
def collect_images(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    retrain: RetrainParams,
) -> dict[str, Any]:
    """The pool and the new labeled images, read, validated and decoded; known ones dropped.

    The class of a file is the name of the folder it is in (``incoming/dog/x.jpg``), or, in
    Kaggle's naming, its prefix (``dog.12.jpg``). Files are decoded like the data pipeline
    decodes (same size as ``train_set``). A new file is set aside, not added, when it cannot
    be decoded or its class is unknown (``rejected``), or when the same file is already in
    the pool or the same picture is in one of the fixed splits (``duplicates``) -- so that a
    rerun adds nothing twice and no test image leaks into training.

    Args:
        train_set: The data pipeline's training split (gives the classes and image size).
        validation_set: The fixed validation split (checked for duplicates).
        test_set: The fixed test split (checked for duplicates).
        retrain: ``incoming_dir``, ``archive``, ``processed_dir`` (the pool),
            ``on_bad_image`` (skip | fail).

    Returns:
        ``images``, ``labels``, ``classes``, ``files``, ``sha256`` of the new images, the
        ``sources`` to move into the pool after the run, ``rejected``, ``duplicates``, the
        ``run_id`` naming this run's processed folder, and ``pool`` (``images``, ``labels``,
        ``files``, ``sha256`` of the images earlier runs added).

    Raises:
        ValueError: With ``on_bad_image: fail``, if any new file is unreadable or unlabeled.
    """
    retrain = RetrainParams.coerce(retrain)
    classes = [str(c) for c in train_set["classes"]]
    size = tuple(int(v) for v in train_set["images"].shape[1:3])
    source = Path(retrain.archive or retrain.incoming_dir)
    fixed = _pixel_hashes(train_set, validation_set, test_set)
    pool = _read_pool(Path(retrain.processed_dir), classes, size, fixed)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {
        "run_id": run_id,
        "source": str(source),
        "classes": classes,
        "pool": pool,
        "rejected": [],
        "duplicates": [],
    }
    if not source.exists():
        logger.info("No new images: '%s' does not exist.", source)
        files: Iterable[ImageFile] = []
    else:
        files = iter_image_files(source)
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
    _log_collected(result)
    return result


def _read_pool(
    processed: Path, classes: list[str], size: tuple[int, int], fixed: dict[str, str]
) -> dict[str, Any]:
    """Every image earlier runs moved into ``processed/<run id>/`` (not their set-asides).

    Read with the rules new files meet (an archive delivered whole is read again, and its
    unusable members are left out again), so a change of image size or a run that died
    half-way through moving files needs nothing special.
    """
    files: list[ImageFile] = []
    if processed.is_dir():
        for run in sorted(p for p in processed.iterdir() if p.is_dir()):
            files.extend(
                f for f in iter_image_files(run) if f.name.split("/", 1)[0] not in SET_ASIDE
            )
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


def _log_collected(result: dict[str, Any]) -> None:
    counts = Counter(result["classes"][i] for i in result["labels"])
    logger.info(
        "Incoming: %d new images (%s), %d already known, %d rejected; the pool holds %d.",
        len(result["files"]),
        ", ".join(f"{c}: {counts[c]}" for c in result["classes"]) or "none",
        len(result["duplicates"]),
        len(result["rejected"]),
        len(result["pool"]["files"]),
    )
    for item in result["rejected"][:10]:
        logger.warning("Set aside %s: %s", item["file"], item["reason"])


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
) -> dict[str, Any]:
    """Train a new model on ``train_set`` + the pool + the new images, if there are new ones.

    The one place that decides whether this run trains at all: only when new images came in
    or ``retrain.force`` is set; otherwise the challenger is ``None`` and the run is a skip.
    The architecture is ``models[retrain.model]``; ``retrain.training`` overrides single keys
    of ``training`` (e.g. ``epochs``). ``models`` is the whole ``models`` group (Kedro
    validates a typed group, not a mapping of them): ``RetrainParams.model_options`` picks
    and validates the entry, as ``params_hooks.ParamsCrossCheckHook`` did before the run.

    Returns:
        ``{"model": keras.Model | None, "history": {...}, "train_images": int}``.
    """
    retrain = RetrainParams.coerce(retrain)
    if not len(images["files"]) and not retrain.force:
        logger.info("No new images: no challenger is trained (retrain.force=true to train one).")
        return {"model": None, "history": {}, "train_images": 0}
    name, model_options = retrain.model, retrain.model_options(models)
    options = TrainingParams.coerce(training).merged(retrain.training)
    combined = training_set(train_set, images)
    logger.info(
        "Training challenger '%s' on %d images (%d from train_set, %d from the pool, %d new).",
        name,
        len(combined["labels"]),
        len(train_set["labels"]),
        len(images["pool"]["labels"]),
        len(images["labels"]),
    )
    model = build_model(combined, model_options, augmentation, options)
    model, history = train_model(model, combined, validation_set, options)
    return {"model": model, "history": history, "train_images": len(combined["labels"])}


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
    challenger: dict[str, Any],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, Any]:
    """Score the challenger and the champion on the fixed test set and decide.

    Skip when no challenger was trained; otherwise :func:`promotion_rule` on both scores.

    Returns:
        The decision (``action`` promote | keep | skip, ``reason``, both scores, the
        champion's version) and ``challenger_metrics``.
    """
    retrain = RetrainParams.coerce(retrain)
    if challenger["model"] is None:
        decision = promotion_rule(None, {}, retrain)
        return {**decision, "challenger_metrics": {}}
    metrics, *_figures = evaluate_model(challenger["model"], test_set, evaluation)
    champion = _champion_metrics(test_set, evaluation, retrain)
    return {**promotion_rule(metrics, champion, retrain), "challenger_metrics": metrics}


def _champion_metrics(
    test_set: dict[str, Any], evaluation: EvaluationParams, retrain: RetrainParams
) -> dict[str, Any]:
    """The current champion's metrics on the test set, with its ``version`` (``{}``: none)."""
    name, alias = retrain.registered_model_name, retrain.champion_alias
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


def promotion_rule(
    challenger_metrics: dict[str, Any] | None,
    champion_metrics: dict[str, Any],
    retrain: RetrainParams | dict[str, Any],
) -> dict[str, Any]:
    """Promote the challenger only if it beats the champion by ``retrain.min_improvement``.

    Both must reach ``retrain.min_score`` (so a broken first model does not become champion).
    With no champion, a challenger that reaches ``min_score`` is promoted; ``None`` (no
    challenger trained) is a skip.

    Returns:
        ``action`` (promote | keep | skip), ``reason``, ``metric``, both scores.
    """
    retrain = RetrainParams.coerce(retrain)
    metric, higher = retrain.metric, retrain.greater_is_better
    margin, floor = float(retrain.min_improvement), retrain.min_score
    decision = {
        "metric": metric,
        "greater_is_better": higher,
        "min_improvement": margin,
        "min_score": floor,
        "challenger_score": (challenger_metrics or {}).get(metric),
        "champion_score": champion_metrics.get(metric),
        "champion_version": champion_metrics.get("version"),
    }
    if challenger_metrics is None:
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


# ---- 4. register -----------------------------------------------------------------------------
def register_challenger(
    *,
    challenger: dict[str, Any],
    decision: dict[str, Any],
    images: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, Any]:
    """Log the run to MLflow, register the challenger and move the aliases.

    The challenger becomes a new version of ``retrain.registered_model_name`` (a serving
    pyfunc, see :mod:`image_classifiers.serving`) with alias ``challenger``; ``champion``
    moves to it only when the decision is to promote. The MLflow run records the decision,
    both scores and the data added.

    Returns:
        The decision (without the challenger's metrics) plus ``version`` and
        ``mlflow_run_id``.
    """
    retrain = RetrainParams.coerce(retrain)
    evaluation = EvaluationParams.coerce(evaluation)
    record = {k: v for k, v in decision.items() if k != "challenger_metrics"}
    record.update(version=None, mlflow_run_id=None)
    with _mlflow_run(retrain) as run:
        if run is not None:
            record["mlflow_run_id"] = run.info.run_id
            _log_decision(decision, images)
        if decision["action"] == SKIP:
            return record
        name = retrain.registered_model_name
        with tempfile.TemporaryDirectory(prefix="challenger-") as tmp:
            path = Path(tmp) / "challenger.keras"
            challenger["model"].save(path)
            info = log_classifier(
                path,
                list(images["classes"]),
                name="challenger",
                registered_model_name=name,
                threshold=evaluation.threshold,
                batch_size=evaluation.batch_size,
            )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in _version_tags(decision, images).items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, retrain.challenger_alias, version)
        if decision["action"] == PROMOTE:
            client.set_registered_model_alias(name, retrain.champion_alias, version)
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
def _mlflow_run(retrain: RetrainParams) -> Iterator[Any]:
    """The active run (kedro-mlflow opens one per kedro run), or a run of our own."""
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    if retrain.experiment:
        mlflow.set_experiment(retrain.experiment)
    with mlflow.start_run(run_name="retrain") as run:
        yield run


def _log_decision(decision: dict[str, Any], incoming: dict[str, Any]) -> None:
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
            "decision": {k: v for k, v in decision.items() if k != "challenger_metrics"},
            "challenger_metrics": decision["challenger_metrics"],
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


# ---- 5. archive: the new files join the pool -------------------------------------------------
def archive_incoming(
    images: dict[str, Any], registration: dict[str, Any], retrain: RetrainParams
) -> dict[str, Any]:
    """Move the files this run used or set aside into its processed folder; report the run.

    Runs last, on the registration's record (what the report says), so files move only once
    the challenger trained on them is registered. Added files go to
    ``<processed_dir>/<run id>/`` -- which makes them part of the pool the next run reads --
    duplicates and rejected files to its ``duplicates/`` and ``rejected/`` sub-folders,
    keeping their relative paths.

    Returns:
        The run's report (also logged to MLflow when a run is open).
    """
    target = Path(RetrainParams.coerce(retrain).processed_dir) / images["run_id"]
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
    report = {
        "run_id": images["run_id"],
        "source": images["source"],
        "processed_dir": str(target) if moved else None,
        "new_images": len(images["files"]),
        "new_per_class": dict(Counter(images["classes"][i] for i in images["labels"])),
        "duplicates": images["duplicates"],
        "rejected": images["rejected"],
        "pool_images": len(images["pool"]["files"]) + len(images["files"]),
        **{k: registration[k] for k in ("action", "reason", "metric", "version", "mlflow_run_id")},
        "challenger_score": registration["challenger_score"],
        "champion_score": registration["champion_score"],
        "champion_version": registration["champion_version"],
    }
    if registration["mlflow_run_id"] and mlflow.active_run() is None:
        with mlflow.start_run(run_id=registration["mlflow_run_id"]):
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
