"""The search: an Optuna study over a training pipeline's ``training``, ``augmentation`` and
``model_options`` groups. Each trial builds and trains with the target's own code
(``build_model``, ``core.training.fit_model``) on its data processing outputs, is pruned from
the per-epoch validation metric and is an MLflow run nested in the study's run; worker
processes share the study through Optuna's RDB storage (``tune.storage``)."""

import json
import logging
import multiprocessing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import optuna
from optuna.trial import TrialState
from optuna_integration.keras import KerasPruningCallback
from plotly.graph_objects import Figure
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from image_classifiers.core.params import Params, SearchDimension, TuneParams
from image_classifiers.core.training import fit_model
from image_classifiers.pipelines.model_training.nodes import build_model
from image_classifiers.tracking import MlflowEpochMetrics

logger = logging.getLogger(__name__)

# The MLflow status a trial's run ends with, by the trial's state.
RUN_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}


@dataclass(frozen=True)
class Search:
    """What every worker needs to run trials (picklable: workers are spawned processes)."""

    tune: TuneParams
    study_name: str
    groups: dict[str, Params]  # the target's training, augmentation, model_options
    train_set: dict[str, Any]
    validation_set: dict[str, Any]
    tracking_uri: str | None = None
    parent_run_id: str | None = None  # the study's MLflow run


def trial_groups(groups: dict[str, Params], values: dict[str, Any]) -> dict[str, Params]:
    """``groups`` with the trial's ``{"<group>.<key>": value}`` set (validated again)."""
    changes: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        group, key = name.split(".", 1)
        changes.setdefault(group, {})[key] = value
    return {name: group.merged(changes.get(name)) for name, group in groups.items()}


def check_space(tune: TuneParams, groups: dict[str, Params]) -> None:
    """Each dimension's ends (or choices) must make valid groups, before any trial runs."""
    for group, keys in tune.space.items():
        for key, dimension in keys.items():
            ends = dimension.choices or [dimension.low, dimension.high]
            for value in ends:
                try:
                    trial_groups(groups, {f"{group}.{key}": value})
                except ValueError as error:  # pydantic's ValidationError is one
                    raise ValueError(
                        f"tune.space.{group}.{key}: {value!r} is no valid {group}.{key} for "
                        f"tune.target {tune.target}: {error}"
                    ) from None


def suggest(trial: optuna.Trial, name: str, dimension: SearchDimension) -> Any:
    """The trial's value of one dimension."""
    if dimension.choices is not None:
        return trial.suggest_categorical(name, dimension.choices)
    if dimension.integer:
        low, high, step = int(dimension.low), int(dimension.high), int(dimension.step or 1)
        return trial.suggest_int(name, low, high, step=step, log=dimension.log)
    return trial.suggest_float(
        name, dimension.low, dimension.high, step=dimension.step, log=dimension.log
    )


def space_signature(tune: TuneParams) -> str:
    """What a study is a search of: resuming it with another space or target is an error."""
    space = {g: {k: d.model_dump() for k, d in keys.items()} for g, keys in tune.space.items()}
    return json.dumps(
        {"target": tune.target, "metric": tune.metric, "space": space}, sort_keys=True
    )


def shown(url: str) -> str:
    """``url`` with its password, if any, masked: for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``, or a ``ValueError`` saying why it cannot be used."""
    sqlite = url.startswith("sqlite:///")
    engine_kwargs = {}
    if sqlite:
        if (path := Path(url.removeprefix("sqlite:///"))).name:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Workers write to one file: wait for its lock (sqlite3 gives up after 5 s) rather
        # than fail a trial while another worker commits on a busy machine. sqlite3 itself
        # begins no transaction (isolation_level None): see serialize_sqlite.
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
    try:
        # A worker killed mid-trial (out of host memory) stops beating: its trial is failed.
        experimental = optuna.exceptions.ExperimentalWarning  # heartbeats: stable for years
        with warnings.catch_warnings(action="ignore", category=experimental):
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs, heartbeat_interval=30, grace_period=120
            )
    except Exception as error:  # drivers raise their own errors
        raise ValueError(
            f"tune.storage {shown(url)!r} cannot be used ({type(error).__name__}: {error}); give a "
            "reachable database URL (sqlite:///path.db, postgresql://user@host/db)"
        ) from None
    if sqlite:
        serialize_sqlite(storage.engine)
    return storage


def serialize_sqlite(engine: Engine) -> None:
    """Make each transaction on ``engine`` take SQLite's write lock when it begins.

    Optuna reads a queued (``enqueue_trial``) trial, then marks it running, in one transaction
    "for update"; SQLite has no row locks and sqlite3 begins a transaction only at its first
    write, so two workers could both read it as waiting and run the same trial (the second
    one's result is then refused: "Cannot tell a COMPLETE trial"). ``BEGIN IMMEDIATE`` makes
    the read and the write one step per worker; the others wait (the timeout above).
    """
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))


def load_study(tune: TuneParams, worker: int = 0) -> optuna.Study:
    """The study, with this worker's sampler (seeded per worker) and the pruner."""
    pruner = (
        optuna.pruners.MedianPruner(tune.pruner_startup_trials, tune.pruner_warmup_epochs)
        if tune.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    seed = None if tune.seed is None else tune.seed + worker
    return optuna.create_study(
        storage=open_storage(tune.storage),
        study_name=tune.study_name or tune.target,
        direction=tune.direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )


def run_trial(search: Search, trial: optuna.Trial) -> float:
    """One trial: suggest, build and train with the target's code; the best epoch's metric.
    Its MLflow run, nested in the study's, gets the values, the epochs and the outcome."""
    tune = search.tune
    values = {
        f"{group}.{key}": suggest(trial, f"{group}.{key}", dimension)
        for group, keys in tune.space.items()
        for key, dimension in keys.items()
    }
    run = mlflow.start_run(
        run_name=f"{search.study_name}.trial_{trial.number}",
        parent_run_id=search.parent_run_id,
        nested=mlflow.active_run() is not None,
        tags={"optuna.study": search.study_name, "optuna.trial": str(trial.number)},
    )
    trial.set_user_attr("mlflow_run_id", run.info.run_id)
    state = TrialState.FAIL
    try:
        mlflow.log_params(values)
        groups = trial_groups(search.groups, values)
        update = {"checkpoint_dir": None, **({"epochs": tune.epochs} if tune.epochs else {})}
        training = groups["training"].model_copy(update=update)
        keras.backend.clear_session()  # the previous trial's graphs and memory
        model = build_model(
            search.train_set, groups["model_options"], groups["augmentation"], training
        )
        callbacks = [MlflowEpochMetrics(), KerasPruningCallback(trial, tune.metric)]
        _, history = fit_model(
            model, search.train_set, search.validation_set, training, callbacks=callbacks
        )
        best = (min if tune.direction == "minimize" else max)(history[tune.metric])
        mlflow.log_metric(f"best_{tune.metric}", best)
        state = TrialState.COMPLETE
        return best
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        raise
    finally:
        mlflow.set_tag("optuna.state", state.name)
        mlflow.end_run(RUN_STATUS.get(state, "FAILED"))


def work(search: Search, worker: int, n_trials: int) -> None:
    """A worker: ``n_trials`` trials of the shared study; a failing trial (out of memory,
    say) is recorded as failed and the next one starts."""
    if worker:  # a spawned process: MLflow's store and a log line per trial
        logging.basicConfig(level=logging.INFO, format=f"[worker {worker}] %(message)s", force=True)
        if search.tracking_uri:
            mlflow.set_tracking_uri(search.tracking_uri)
    study = load_study(search.tune, worker)
    study.optimize(lambda trial: run_trial(search, trial), n_trials, catch=(Exception,))


def run_workers(search: Search) -> None:
    """``tune.n_trials`` trials over ``tune.n_workers`` processes (one: in this process)."""
    tune = search.tune
    shares = [len(range(w, tune.n_trials, tune.n_workers)) for w in range(tune.n_workers)]
    if tune.n_workers == 1:
        work(search, 0, tune.n_trials)
        return
    # spawn, not fork: a forked TensorFlow (or JAX) runtime can deadlock.
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=work, args=(search, w + 1, n), name=f"tune-worker-{w + 1}")
        for w, n in enumerate(shares)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode:
            logger.warning(
                "%s ended with exit code %s (killed for memory?): its running trial is "
                "marked failed once its heartbeat stops, the other workers went on.",
                process.name,
                process.exitcode,
            )


def study_figures(study: optuna.Study) -> tuple[Figure, Figure]:
    """Optuna's optimisation history and parameter importances (a note while too few)."""
    history = optuna.visualization.plot_optimization_history(study)
    try:
        importances = optuna.visualization.plot_param_importances(study)
    except (ValueError, RuntimeError) as error:  # fewer than two completed trials, ...
        importances = Figure().update_layout(title=f"No parameter importances: {error}")
    return history, importances


def open_study(tune: TuneParams, groups: dict[str, Params]) -> optuna.Study:
    """The study, created or resumed, once the space fits ``groups``, the storage opens and
    the study (if any) searches the same space: checked before any trial."""
    check_space(tune, groups)
    study = load_study(tune)
    signature = space_signature(tune)
    known = study.user_attrs.get("search_space")
    if known is None:
        study.set_user_attr("search_space", signature)
    elif known != signature:
        raise ValueError(
            f"study '{study.study_name}' in {shown(tune.storage)} searches another space or target "
            f"({known}); give another tune.study_name, or the space it was made with"
        )
    return study


def run_search(
    train_set: dict[str, Any],
    validation_set: dict[str, Any],
    tune: TuneParams,
    groups: dict[str, Params],
) -> tuple[dict[str, Any], Any, tuple[Figure, Figure]]:
    """Check the space, open (or resume) the study, run ``tune.n_trials`` trials over
    ``tune.n_workers`` processes; the best trial's report, the trials and the plots."""
    active = mlflow.active_run()
    search = Search(
        tune,
        tune.study_name or tune.target,
        groups,
        train_set,
        validation_set,
        tracking_uri=mlflow.get_tracking_uri() if active else None,
        parent_run_id=active.info.run_id if active else None,
    )
    study = open_study(tune, groups)
    before = len(study.trials)
    logger.info(
        "Study '%s': %d trials so far; adding %d with %d worker(s).",
        search.study_name, before, tune.n_trials, tune.n_workers,
    )  # fmt: skip
    run_workers(search)
    study = load_study(tune)
    states = [trial.state.name for trial in study.trials]
    counts = {state: states.count(state) for state in sorted(set(states))}
    logger.info("Study '%s' now has %d trials: %s.", search.study_name, len(states), counts)
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    if not completed:
        raise ValueError(
            f"no trial of study '{search.study_name}' completed ({counts}); see the failed "
            "trials' runs in MLflow"
        )
    best = study.best_trial
    report = {
        "study_name": search.study_name,
        "target": tune.target,
        "metric": tune.metric,
        "best_value": best.value,
        "best_trial": best.number,
        "best_mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "params": best.params,
        "trials": counts,
        "train_with": f"kedro run --pipelines={tune.target} --env=tuned",
    }
    return report, study.trials_dataframe(), study_figures(study)
