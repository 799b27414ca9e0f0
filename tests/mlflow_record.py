"""What a tracked ``kedro run`` leaves in MLflow, as a comparable record.

``record_smoke_runs(tmp)`` runs ``xception_cats`` and ``compare_architectures`` in the smoke
environment of a throw-away project copy and summarises its store: each run by its name
(nested under its parent's), with its status, the names of its params, metrics and
artifacts, and the registered models with their versions' counts. Values (accuracies,
digests, times) differ from run to run, names do not: the record keeps names only.

``tests/golden/mlflow_smoke_runs.json`` holds the record made before the redesign (issue
#18); ``python tests/mlflow_record.py OUT.json`` writes a fresh one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import mlflow
from fixture_archives import write_archive
from project_copies import copy_project, run_pipeline

GOLDEN = Path(__file__).parent / "golden" / "mlflow_smoke_runs.json"
# Tags that name the run's context; the rest (git commit, host, ...) vary by machine.
KEPT_TAGS = ("model", "architecture", "kedro_pipeline")


def _artifacts(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found += _artifacts(client, run_id, item.path)
        else:
            found.append(item.path)
    return found


def summarise_store(tracking_uri: str) -> dict[str, Any]:
    """Runs (keyed ``<parent name>/<run name>``) and registered models of a store."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name("image_classifiers")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    names = {run.info.run_id: run.info.run_name for run in runs}
    summary: dict[str, Any] = {}
    for run in runs:
        parent = names.get(run.data.tags.get("mlflow.parentRunId", ""), "")
        # Model files differ by flavor internals; their folders (model/...) are what counts.
        artifacts = sorted(
            {
                path.split("/", 1)[0] + "/" if "/" in path else path
                for path in _artifacts(client, run.info.run_id)
            }
        )
        summary[f"{parent}/{run.info.run_name}"] = {
            "status": run.info.status,
            "params": sorted(run.data.params),
            "metrics": sorted(key for key in run.data.metrics if not key.startswith("system/")),
            "system_metrics": any(key.startswith("system/") for key in run.data.metrics),
            "tags": {key: run.data.tags[key] for key in KEPT_TAGS if key in run.data.tags},
            "artifacts": artifacts,
        }
    registered = {
        model.name: len(client.search_model_versions(f"name='{model.name}'"))
        for model in client.search_registered_models()
    }
    return {"runs": dict(sorted(summary.items())), "registered_models": registered}


def record_smoke_runs(tmp: Path) -> dict[str, Any]:
    """Run the two pipelines in a smoke copy of the project and summarise its store."""
    project = copy_project(tmp / "project")
    archive = write_archive(tmp / "dogs-vs-cats.zip", indices=range(16))
    previous = Path.cwd()
    os.chdir(project)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        params = {"download": {"local_path": str(archive)}}
        run_pipeline(project, "xception_cats", params, env="smoke")
        run_pipeline(project, "compare_architectures", params, env="smoke")
    finally:
        os.chdir(previous)
    return summarise_store(f"sqlite:///{project / 'mlflow.db'}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        record = record_smoke_runs(Path(folder))
    Path(sys.argv[1]).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
