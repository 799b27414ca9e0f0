"""Dagster jobs of the Kedro project, from ``conf/<env>/dagster.yml`` (docs/deployment.md).

Each Kedro node is an op running ``KedroSession.run(node_names=[node])`` (on the multiprocess
executor in its own process), resuming the Dagster run's MLflow run (``MLFLOW_RUN_ID``).
kedro-dagster re-implements a Kedro run and keeps kedro-mlflow's run in one process's memory."""

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
MLFLOW_RUN_TAG = "mlflow_run_id"  # on the Dagster run; "dagster_run_id" on the MLflow run


def _open_mlflow_run(context: Any, pipeline_name: str, dagster_run_id: str) -> str | None:
    """Create the Dagster run's MLflow run where ``kedro run`` would open its own."""
    config = context.mlflow  # kedro-mlflow's mlflow.yml, set up by its after_context_created
    if pipeline_name in (config.tracking.disable_tracking.pipelines or []):
        return None
    experiment = mlflow.get_experiment_by_name(config.tracking.experiment.name)
    run = mlflow.MlflowClient().create_run(
        experiment.experiment_id,
        run_name=config.tracking.run.name or pipeline_name,
        tags={"dagster_run_id": dagster_run_id},
    )
    return run.info.run_id


def _op_name(node: Any) -> str:
    return node.name.replace(".", "__")  # Dagster names allow no dots


def _node_op(project: Path, env: str, spec: dict, node: Any, parents: list[str]):
    """The op that runs one Kedro node, after ``parents`` (ops whose outputs it reads)."""
    pipeline_name = spec["pipeline"]

    @dg.op(
        name=_op_name(node),
        ins={parent: dg.In(dg.Nothing) for parent in parents},
        out=dg.Out(dg.Nothing),  # what nodes hand on are catalog files, not Dagster outputs
        tags={"kedro_node": node.name},
    )
    def run_node(context: dg.OpExecutionContext) -> None:
        # The first op creates the MLflow run (its id tags the Dagster run); the others resume it.
        run_id = context.instance.get_run_by_id(context.run_id).tags.get(MLFLOW_RUN_TAG)
        with KedroSession.create(project, env=env, runtime_params=spec.get("params")) as session:
            kedro_context = session.load_context()  # kedro-mlflow sets the tracking URI
            if run_id is None:
                run_id = _open_mlflow_run(kedro_context, pipeline_name, context.run_id)
                if run_id is not None:
                    context.instance.add_run_tags(context.run_id, {MLFLOW_RUN_TAG: run_id})
            if run_id is not None:
                os.environ["MLFLOW_RUN_ID"] = run_id  # consumed by kedro-mlflow's start_run
            try:
                session.run(pipeline_names=[pipeline_name], node_names=[node.name])
            except BaseException:
                if run_id is not None:  # also an error before kedro-mlflow resumed it
                    mlflow.MlflowClient().set_terminated(run_id, "FAILED")
                raise
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
        description=f"kedro run --env={env} --pipelines={pipeline_name}, one op per node",
        executor_def=EXECUTORS[kind].configured(executors.get(kind) or {}),
        tags={"kedro_env": env, "kedro_pipeline": pipeline_name},
    )
    def kedro_job() -> None:
        done: dict[str, Any] = {}
        for node in pipelines[pipeline_name].nodes:  # topologically sorted
            parents = [_op_name(parent) for parent in dependencies[node]]
            op = _node_op(project, env, spec, node, parents)
            done[_op_name(node)] = op(**{parent: done[parent] for parent in parents})

    return kedro_job


def build_definitions(env: str | None = None, project_path: Path | None = None) -> dg.Definitions:
    """Jobs and schedules from ``conf/<env>/dagster.yml`` (default ``KEDRO_ENV`` or ``local``)
    of the project at ``project_path`` (default: the one containing the working directory)."""
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
        dg.ScheduleDefinition(name=schedule, job=jobs[name], **config["schedules"][schedule])
        for name, spec in config["jobs"].items()
        if (schedule := spec.get("schedule"))
    ]
    return dg.Definitions(jobs=list(jobs.values()), schedules=schedules)


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dg dev`` / ``dagster dev -m image_classifiers.definitions`` loads (lazily)."""
    return build_definitions()


def retrain_job() -> dg.JobDefinition:
    """The ``retrain`` job of ``KEDRO_ENV`` (for ``dg.reconstructable``, e.g. in tests)."""
    return build_definitions().resolve_job_def("retrain")
