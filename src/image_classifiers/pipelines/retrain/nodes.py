"""Retraining with champion/challenger promotion: collect -> train -> decide -> register -> archive.

The pool is the processed folder, no second copy: a file joins it by being moved into
``<processed_dir>/<run id>/`` in the last step, after the challenger trained on it is
registered, so a failed run is simply run again (a rerun knows moved files by SHA-256).
"""

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
    ExportParams,
    RetrainParams,
    TrainingParams,
)
from image_classifiers.model_logging import summary_text
from image_classifiers.pipelines.export.nodes import export_formats
from image_classifiers.pipelines.model_training.nodes import (
    build_model,
    calibrate_model,
    evaluate_model,
    train_model,
    write_model_card,
)
from image_classifiers.pipelines.predict.sources import ImageFile, iter_image_files
from image_classifiers.serving import ModelNotFoundError, load_classifier, log_classifier

logger = logging.getLogger(__name__)

PROMOTE, KEEP = "promote", "keep"
#: Sub-folders of a run's processed folder that hold files not added to the pool.
SET_ASIDE = ("duplicates", "rejected")


def collect_images(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    retrain: RetrainParams,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pool and the new labeled images decoded at ``train_set``'s size, and the delivery.

    A file's class is its folder (``dog/x.jpg``) or Kaggle prefix (``dog.12.jpg``). A new file
    unreadable or of no known class is ``rejected``; one in the pool or a fixed split already
    is a ``duplicate``: a rerun adds nothing twice and no test image leaks into training.
    """
    classes = [str(c) for c in train_set["classes"]]
    size = tuple(int(v) for v in train_set["images"].shape[1:3])
    source = Path(retrain.archive or retrain.incoming_dir)
    splits = {"train_set": train_set, "validation_set": validation_set, "test_set": test_set}
    fixed = {_pixel_hash(image): name for name, s in splits.items() for image in s["images"]}
    runs = sorted(p for p in Path(retrain.processed_dir).glob("*") if p.is_dir())
    limits = retrain.archive_limits
    pooled = (
        f
        for run in runs
        for f in iter_image_files(run, limits, "retrain")
        if f.name.split("/")[0] not in SET_ASIDE
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
    files = iter_image_files(source, limits, "retrain") if source.exists() else []
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
        prefix = PurePosixPath(file.name).name.split(".", 1)[0]  # Kaggle's dog.12.jpg
        label = next((c for c in (file.parent, prefix) if c in classes), None)
        digest = hashlib.sha256(file.data).hexdigest() if file.data is not None else None
        if label is None:
            group = "rejected"
            reason = (
                f"no class: put it in a folder named after its class ({', '.join(classes)}), "
                f"e.g. incoming/{classes[0]}/{PurePosixPath(file.name).name}"
            )
        elif digest in known:
            group, reason = "duplicates", "already in the training pool"
        elif isinstance(image := file.decoded(size), str):  # why it cannot be decoded
            group, reason = "rejected", image
        elif split := fixed.get(_pixel_hash(image)):
            group, reason = "duplicates", f"the same picture is in {split}"
        else:
            known.add(digest)  # the same file twice in one delivery counts once
            images.append(image)
            records.append({**record, "sha256": digest, "label": classes.index(label)})
            continue
        report[group].append({**record, "reason": reason})
    return records, np.stack(images) if images else np.zeros((0, *size, 3), dtype=np.uint8)


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
) -> tuple[dict[str, keras.Model], dict[str, dict[str, list]]]:
    """The challengers by model name and their training histories: ``{}`` unless new images
    came in or ``retrain.force``.

    ``models[retrain.model]`` trained on ``train_set``, the pool and the new ``images``.
    """
    if not delivery["added"] and not retrain.force:
        logger.info(
            "No new images: no challenger is trained and nothing is registered "
            "(retrain.force=true trains one anyway)."
        )
        return {}, {}
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
    model, history = train_model(model, combined, validation_set, options)
    return {retrain.model: model}, {retrain.model: history}


def evaluate_challengers(
    *,
    challengers: dict[str, keras.Model],
    histories: dict[str, dict[str, list]],
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    training: TrainingParams,
    retrain: RetrainParams,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str]]:
    """Per challenger, what every trained model gets (``model_training``'s nodes): the
    temperature fitted on the validation split, the test report and the model card, whose
    training split is ``train_set`` (the pool and new images are in the delivery report).
    The metrics and calibration by challenger; the cards twice, for the files and for
    :func:`register_challenger`."""
    reports, cards = {}, {}
    for name, model in challengers.items():
        calibration = calibrate_model(model, validation_set, evaluation)
        metrics, *_figures, top_losses = evaluate_model(model, test_set, evaluation, calibration)
        reports[name] = {"metrics": metrics, "calibration": calibration}
        cards[name] = write_model_card(
            model=model,
            metrics=metrics,
            calibration=calibration,
            top_losses=top_losses,
            training_history=histories[name],
            train_set=train_set,
            validation_set=validation_set,
            test_set=test_set,
            training=training.merged(retrain.training),
            model_summary=summary_text(model),
        )
    return reports, cards, cards


def decide_promotion(
    reports: dict[str, dict[str, Any]],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Per challenger: :func:`promotion_rule`'s decision on the fixed test set, with its
    ``challenger_metrics`` and ``calibration`` (:func:`evaluate_challengers`)."""
    # Loaded and scored once for all challengers, and not at all when there is none.
    champion = _champion_metrics(test_set, evaluation, retrain) if reports else {}
    decisions = {}
    for name, report in reports.items():
        decisions[name] = {
            **promotion_rule(report["metrics"], champion, retrain),
            "challenger_metrics": report["metrics"],
            "calibration": report["calibration"],
        }
    return decisions


def _champion_metrics(
    test_set: dict[str, Any], evaluation: EvaluationParams, retrain: RetrainParams
) -> dict[str, Any]:
    """The champion's test metrics and ``version``, ``{}`` if none. Not a catalog input
    (``MlflowModelRegistryDataset``): there is no champion before the first promotion."""
    name, alias = retrain.registered_model_name, retrain.champion_alias
    try:
        champion = load_classifier(f"models:/{name}@{alias}")
    except ModelNotFoundError:
        logger.info("No champion yet ('%s@%s' does not exist).", name, alias)
        return {}
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    try:
        calibration = {"temperature": champion.temperature or 1.0}
        metrics, *_reports = evaluate_model(champion.model, test_set, evaluation, calibration)
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
    """Promote only a challenger that beats the champion by ``retrain.min_improvement`` (ties
    keep the champion) and reaches ``retrain.min_score``, so a broken first model never wins,
    and whose calibration error is within ``retrain.max_calibration_error`` when given."""
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
    # The probabilities it would serve (its temperature applied) must mean what they say.
    ece = challenger_metrics.get("test_expected_calibration_error_calibrated")
    bound = retrain.max_calibration_error
    if action == PROMOTE and bound is not None and (ece is None or ece > bound):
        action = KEEP
        shown = "not measured" if ece is None else f"{ece:.4f}"
        reason += (
            f", but its test calibration error {shown} exceeds "
            f"retrain.max_calibration_error {bound}"
        )
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
    model_cards: dict[str, str],
    delivery: dict[str, Any],
    test_set: dict[str, Any],
    evaluation: EvaluationParams,
    export: ExportParams,
    retrain: RetrainParams,
) -> dict[str, dict[str, Any]]:
    """Register each challenger (a serving pyfunc) in kedro-mlflow's run as a new version,
    aliased ``challenger``, its model card as the version's description and an artifact of the
    model; ``champion`` moves to it only on promotion. It serves its ONNX export when that
    verified on ``test_set`` (``retrain.serve_onnx``); without one, ``retrain.require_export``
    keeps the champion."""
    name, run = retrain.registered_model_name, mlflow.active_run()
    run_id = run.info.run_id if run else None
    registrations = {}
    for model_name, model in challengers.items():
        reports = ("challenger_metrics", "calibration")  # in decisions.json, not in tags
        decision = {k: v for k, v in decisions[model_name].items() if k not in reports}
        with tempfile.TemporaryDirectory(prefix="challenger-") as tmp:
            model.save(Path(tmp) / "challenger.keras")
            onnx, why = None, "not asked for"
            if retrain.serve_onnx or retrain.require_export:
                only_onnx = export.model_copy(update={"formats": ["onnx"], "output_dir": tmp})
                report = export_formats(
                    model, model_name, test_set, only_onnx, threshold=evaluation.threshold
                )
                onnx, why = (
                    report["formats"]["onnx"].get("file"),
                    report["formats"]["onnx"].get("reason"),
                )
            if onnx is None and retrain.require_export and decision["action"] == PROMOTE:
                decision["action"] = KEEP
                decision["reason"] += f", but retrain.require_export: no verified ONNX ({why})"
            decision["served_as"] = "keras" if onnx is None else "onnx"
            info = log_classifier(
                Path(tmp) / "challenger.keras",
                delivery["classes"],
                name="challenger",
                registered_model_name=name,
                threshold=evaluation.threshold,
                batch_size=evaluation.batch_size,
                temperature=decisions[model_name]["calibration"]["temperature"],
                onnx_path=onnx,
                model_card=model_cards[model_name],
            )
        version, client = str(info.registered_model_version), mlflow.MlflowClient()
        client.update_model_version(name, version, description=model_cards[model_name])
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
    """Move the files this run used (the pool) or set aside into its processed folder; report.

    Takes the registrations so that files move only once their challenger is registered.
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
    return {
        "run_id": delivery["run_id"],
        "source": delivery["source"],
        "processed_dir": str(target) if moved else None,
        "new_images": len(delivery["added"]),
        "new_per_class": dict(Counter(delivery["classes"][r["label"]] for r in delivery["added"])),
        "pool_images": len(delivery["pool"]) + len(delivery["added"]),
        **{key: delivery[key] for key in ("added", "duplicates", "rejected")},
        "challengers": registrations,
    }


def _move_aside(source: Path, destination: Path) -> int:
    """Move one file (1) or report that it is gone already (0, e.g. after a crash)."""
    if not source.is_symlink() and not source.exists():  # a link is moved, not followed
        return 0
    destination = destination.with_name(re.sub(r"[^\w.\-]", "_", destination.name) or "file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, destination)  # a rename, or copy and remove across file systems
    return 1
