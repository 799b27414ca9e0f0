"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/kedro_project_setup/settings.html."""

import warnings

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from image_classifiers.errors import ConciseErrorsHook
from image_classifiers.hooks import ModelRunsHook, TrackingStoreHook
from image_classifiers.params_hooks import ParamsCrossCheckHook
from image_classifiers.tracking import artifacts_beside, sqlite_store

# Kedro 1.7's config loader still calls OmegaConf.register_new_resolver, which OmegaConf 2.4
# deprecates: two warnings per run that no user can act on.
warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # kedro-mlflow's own patterns for mlflow.yml, declared here for TrackingStoreHook,
    # which reads it before the plugin does.
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # conf/base/mlflow.yml picks the tracking store: MLFLOW_TRACKING_URI (oc.env), else a
    # SQLite file at the project root with its artifacts beside it.
    "custom_resolvers": {
        "oc.env": oc.env,
        "sqlite_store": sqlite_store,
        "artifacts_beside": artifacts_beside,
    },
}
CONFIG_LOADER_ARGS["merge_strategy"] = {
    # An environment such as conf/smoke overrides single keys, not whole parameter groups.
    "parameters": "soft",
    "mlflow": "soft",
}

# kedro-mlflow (registered automatically as a plugin) opens one MLflow run per kedro run and
# its catalog datasets log into the active run; these hooks create the store and experiment
# safely and add one nested run per model (hooks.py). See docs/tracking.md.
# ConciseErrorsHook: an error with advice for the user ends `kedro run` with its message
# alone, without a traceback (image_classifiers/errors.py).
# ParamsCrossCheckHook: compare_architectures' model list and retrain.model checked against
# the models group.
HOOKS = (
    ParamsCrossCheckHook(),
    TrackingStoreHook(),
    ModelRunsHook(),
    ConciseErrorsHook(),
)
