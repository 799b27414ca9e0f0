"""Project settings (https://docs.kedro.org/en/stable/kedro_project_setup/settings.html)."""

import warnings

from omegaconf.resolvers import oc

from image_classifiers.errors import ConciseErrorsHook
from image_classifiers.hooks import ModelRunsHook, TrackingStoreHook
from image_classifiers.params_hooks import ParamsCrossCheckHook, TuneTargetHook, model_options
from image_classifiers.pipelines.lr_find import LrFindTargetHook
from image_classifiers.tracking import artifacts_beside, sqlite_store

# Kedro 1.7 calls OmegaConf.register_new_resolver, deprecated in OmegaConf 2.4: no user can act.
warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # kedro-mlflow's patterns for mlflow.yml: TrackingStoreHook reads it before the plugin does.
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # mlflow.yml's store: MLFLOW_TRACKING_URI, else a SQLite file at the root, artifacts beside.
    "custom_resolvers": {
        "oc.env": oc.env,
        "sqlite_store": sqlite_store,
        "artifacts_beside": artifacts_beside,
        "model_options": model_options,
    },
    # An environment such as conf/smoke overrides single keys, not whole parameter groups.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}

# kedro-mlflow registers itself; each hook does only what it cannot:
HOOKS = (
    ParamsCrossCheckHook(),  # retrain.model must name a model of the models group
    LrFindTargetHook(),  # lr_find.target picks the pipeline lr_find runs on
    TuneTargetHook(),  # the tune pipeline is built for the run's tune.target
    TrackingStoreHook(),  # create the store and experiment safely for runs started at once
    ModelRunsHook(),  # one nested MLflow run per model, typed parameter groups flattened
    ConciseErrorsHook(),  # a user's mistake ends `kedro run` with its message, no traceback
)
