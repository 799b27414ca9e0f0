"""The tune pipeline: the target's data processing, then the study (``run_study``).

``kedro run --pipelines=tune --params="tune.target=lenet_mnist,tune.n_trials=6,tune.n_workers=2"``.
Which pipeline is searched is a parameter, but a pipeline's nodes are fixed when it is
registered: ``TuneTargetHook`` (params_hooks.py) passes the run's ``tune.target`` here first.
"""

from functools import partial

from kedro.pipeline import Node, Pipeline

from image_classifiers.core.params import TuneParams
from image_classifiers.params_hooks import RUN_TARGET
from image_classifiers.pipelines.experiment import quietly

from .nodes import run_study, target_nodes

OUTPUTS = ("best_parameters", "tuned_parameters", "trials", "history_plot", "importance_plot")


def create_pipeline(**kwargs) -> Pipeline:
    """The target's nodes that make its training and validation splits, then the study on
    them with its training, augmentation and model groups; outputs ``tune.<target>.*``."""
    target = RUN_TARGET["target"] or TuneParams.model_fields["target"].default
    pipeline, build, train = target_nodes(target)
    splits = train.inputs[1:3]
    made = [name for name in splits if name in pipeline.all_outputs()]
    data = pipeline.to_outputs(*made) if made else Pipeline([])
    inputs = [*splits, "params:tune", build.inputs[3], build.inputs[2], build.inputs[1]]
    outputs = [f"tune.{target}.{name}" for name in OUTPUTS]
    # In the namespace of the target's model: ModelRunsHook's run of it is the study's run.
    study = partial(Node, run_study, inputs, outputs, name="tune_study", namespace=train.namespace)
    return quietly(lambda: data + Pipeline([study()]))
