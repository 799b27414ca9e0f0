"""Run the data pipeline on the project's own catalog and parameters, without a KedroSession.

What ``kedro run --pipelines=data_processing`` does -- Kedro's SequentialRunner on a catalog
built from ``conf/base`` (data paths relative to the working directory) -- without loading
every other pipeline and plugin. Importable from any test folder (tests/ is on sys.path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro.validation.parameter_validator import ParameterValidator

from image_classifiers.pipelines.data_processing import create_pipeline

PROJECT = Path(__file__).resolve().parents[1]


def flatten_params(params: dict[str, Any], prefix: str = "params:") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"params:a": {...}, "params:a.b": 1}``, as Kedro feeds them."""
    flat = {}
    for key, value in params.items():
        flat[f"{prefix}{key}"] = value
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{prefix}{key}."))
    return flat


def run_data_pipeline(runtime_params: dict[str, Any], namespace: str | None = None) -> None:
    """Run the data pipeline (in ``namespace``) with ``runtime_params`` over conf/base."""
    loader = OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env="local",
        merge_strategy={"parameters": "soft"},
        runtime_params=runtime_params,
    )
    pipeline = create_pipeline(namespace=namespace)
    wanted = pipeline.datasets()
    conf = {
        name: entry
        for name, entry in loader["catalog"].items()
        if name in wanted
        or ("{" in name and name.endswith("_set"))
        or (namespace and name.startswith("{namespace}."))
    }
    catalog = DataCatalog.from_config(conf)
    # What KedroContext does: the typed parameter groups reach the nodes as validated models.
    params = ParameterValidator({"data": pipeline}).validate_raw_params(loader["parameters"])
    for name, value in flatten_params(params).items():
        catalog[name] = value
    SequentialRunner().run(pipeline, catalog)
