"""Dagster definitions of the Kedro project: the ``retrain`` job, scheduled weekly, and ``predict``.

The jobs, their schedules and executors come from ``conf/<env>/dagster.yml``. Every Kedro node
becomes a Dagster op that runs that one node in a Kedro session of its own, so with Dagster's
multiprocess executor each op is a process of its own (every edge between nodes is a catalog
file). Start Dagster's UI and scheduler from the project root with::

    pip install -e ".[dagster]"
    dg dev        # or: dagster dev -m image_classifiers.definitions (http://127.0.0.1:3000)

``KEDRO_ENV`` picks the Kedro environment (default ``local``), as for ``kedro run``.
See docs/deployment.md.

Why not kedro-dagster: it re-implements a Kedro run (its own hook ops, IO managers and op
config), keeps kedro-mlflow's run in the memory of one process, and its MLflow resource is
dagster-mlflow's, which opens runs of its own; carrying one MLflow run across processes took
patching its internals. Here each op is a plain ``KedroSession.run(node_names=[node])``: Kedro
validates the parameters, runs the hooks and the catalog as ``kedro run`` does, and
kedro-mlflow resumes the Dagster run's MLflow run, whose id MLflow's public ``MLFLOW_RUN_ID``
environment variable hands it.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from kedro.config import OmegaConfigLoader
from kedro.framework.project import pipelines, settings
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.utils import find_kedro_project

EXECUTORS = {"multiprocess": dg.multiprocess_executor, "in_process": dg.in_process_executor}
MLFLOW_RUN_TAG = "mlflow_run_id"  # on the Dagster run
DAGSTER_RUN_TAG = "dagster_run_id"  # on the MLflow run


def _open_mlflow_run(context: Any, pipeline_name: str, dagster_run_id: str) -> str | None:
    """Create the Dagster run's MLflow run where ``kedro run`` would open its own."""
    config = context.mlflow  # kedro-mlflow's mlflow.yml, set up by its after_context_created
    if pipeline_name in (config.tracking.disable_tracking.pipelines or []):
        return None
    experiment = mlflow.get_experiment_by_name(config.tracking.experiment.name)
    run = mlflow.MlflowClient().create_run(
        experiment.experiment_id,
        run_name=config.tracking.run.name or pipeline_name,
        tags={DAGSTER_RUN_TAG: dagster_run_id},
    )
    return run.info.run_id


def _op_name(node: Any) -> str:
    return node.name.replace(".", "__")  # Dagster names allow no dots


def _node_op(project: Path, env: str, pipeline_name: str, node: Any, parents: list[str]):
    """The op that runs one Kedro node, after ``parents`` (ops whose outputs it reads)."""

    @dg.op(
        name=_op_name(node),
        ins={parent: dg.In(dg.Nothing) for parent in parents},
        out=dg.Out(dg.Nothing),  # what nodes hand on are catalog files, not Dagster outputs
        tags={"kedro_node": node.name},
    )
    def run_node(context: dg.OpExecutionContext) -> None:
        # The first op creates the MLflow run and records its id on the Dagster run; every
        # op's kedro-mlflow then resumes it (ending it FINISHED, or FAILED on an error).
        run_id = context.instance.get_run_by_id(context.run_id).tags.get(MLFLOW_RUN_TAG)
        with KedroSession.create(project, env=env) as session:
            if run_id is None:
                run_id = _open_mlflow_run(session.load_context(), pipeline_name, context.run_id)
                if run_id is not None:
                    context.instance.add_run_tags(context.run_id, {MLFLOW_RUN_TAG: run_id})
            if run_id is not None:
                os.environ["MLFLOW_RUN_ID"] = run_id  # consumed by kedro-mlflow's start_run
            try:
                session.run(pipeline_name=pipeline_name, node_names=[node.name])
            finally:
                os.environ.pop("MLFLOW_RUN_ID", None)

    return run_node


def _job(project: Path, env: str, name: str, spec: dict, executors: dict) -> dg.JobDefinition:
    """One op per node of the Kedro pipeline ``spec["pipeline"]``, in its dependency order."""
    pipeline_name = spec["pipeline"]
    dependencies = pipelines[pipeline_name].node_dependencies
    kind = spec.get("executor", "multiprocess")

    @dg.job(
        name=name,
        executor_def=EXECUTORS[kind].configured(executors.get(kind) or {}),
        tags={"kedro_env": env, "kedro_pipeline": pipeline_name},
    )
    def kedro_job() -> None:
        done: dict[str, Any] = {}
        for node in pipelines[pipeline_name].nodes:  # topologically sorted
            parents = [_op_name(parent) for parent in dependencies[node]]
            op = _node_op(project, env, pipeline_name, node, parents)
            done[_op_name(node)] = op(**{parent: done[parent] for parent in parents})

    return kedro_job


def build_definitions(env: str | None = None, project_path: Path | None = None) -> dg.Definitions:
    """Dagster jobs and schedules of the Kedro project, from ``conf/<env>/dagster.yml``.

    Args:
        env: Kedro environment; default ``KEDRO_ENV`` or ``local``.
        project_path: The Kedro project; default the one containing the working directory.

    Returns:
        Dagster ``Definitions`` with the jobs of ``dagster.yml`` (``retrain``, ``predict``).
    """
    env = env or os.environ.get("KEDRO_ENV", "local")
    project = Path(project_path or find_kedro_project(Path.cwd())).resolve()
    bootstrap_project(project)
    config = OmegaConfigLoader(
        str(project / settings.CONF_SOURCE),
        env=env,
        base_env="base",
        default_run_env="local",
        config_patterns={"dagster": ["dagster*", "dagster*/**"]},
        merge_strategy={"dagster": "soft"},  # conf/<env> overrides single keys
    )["dagster"]
    executors = config.get("executors") or {}
    jobs = {
        name: _job(project, env, name, spec, executors) for name, spec in config["jobs"].items()
    }
    schedules = [
        dg.ScheduleDefinition(
            name=spec["schedule"], job=jobs[name], **config["schedules"][spec["schedule"]]
        )
        for name, spec in config["jobs"].items()
        if spec.get("schedule")
    ]
    return dg.Definitions(jobs=list(jobs.values()), schedules=schedules)


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dg dev`` / ``dagster dev -m image_classifiers.definitions`` loads (lazily)."""
    return build_definitions()


def retrain_job() -> dg.JobDefinition:
    """The ``retrain`` job of ``KEDRO_ENV`` (for ``dg.reconstructable``, e.g. in tests)."""
    return build_definitions().resolve_job_def("retrain")
