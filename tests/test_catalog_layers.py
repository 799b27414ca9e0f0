"""kedro-viz draws datasets in their ``metadata.kedro-viz.layer``, and drops every layer of a
pipeline where a dataset feeds one of an earlier layer: each pipeline must keep the order."""

from collections import defaultdict
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project
from kedro.io.catalog_config_resolver import CatalogConfigResolver
from kedro.pipeline import Node, Pipeline

from image_classifiers.params_hooks import RUN_TARGET
from image_classifiers.pipeline_registry import register_pipelines

PROJECT = Path(__file__).resolve().parents[1]
ORDER = ("raw", "intermediate", "primary", "feature", "model_input", "models", "model_output")
ORDER += ("reporting",)


@pytest.fixture(scope="module")
def layer_of():
    bootstrap_project(PROJECT)
    loader = OmegaConfigLoader(str(PROJECT / "conf"), **settings.CONFIG_LOADER_ARGS)
    resolver = CatalogConfigResolver(loader["catalog"])

    def layer(name: str) -> str | None:
        config = resolver.resolve_pattern(name) or {}
        return ((config.get("metadata") or {}).get("kedro-viz") or {}).get("layer")

    return layer


def layer_inversions(pipeline, layer_of) -> list[tuple[str, str]]:
    """(dataset, later dataset) pairs where the later one sits in an earlier layer."""
    feeds = defaultdict(set)
    for node in pipeline.nodes:
        for name in node.inputs:
            feeds[name] |= set(node.outputs)
    inversions = []
    for name in pipeline.datasets():
        if (layer := layer_of(name)) is None:
            continue
        seen, todo = set(), [name]
        while todo:
            for later in feeds[todo.pop()] - seen:
                seen.add(later)
                todo.append(later)
                if (other := layer_of(later)) and ORDER.index(other) < ORDER.index(layer):
                    inversions.append((name, later))
    return inversions


def test_every_pipeline_keeps_its_layers_in_order(layer_of, monkeypatch):
    # The tune pipeline is built for the tune.target of the last session in this process.
    monkeypatch.setitem(RUN_TARGET, "target", None)
    pipelines = register_pipelines()
    assert {layer_of("train_set"), layer_of("mini_xception.model_card")} == {
        "model_input",
        "reporting",
    }
    for name, pipeline in pipelines.items():
        assert layer_inversions(pipeline, layer_of) == [], name


def test_a_reporting_dataset_that_feeds_a_model_is_found(layer_of):
    loop = Pipeline([Node(lambda card: card, "mini_xception.model_card", "transfer.model")])
    assert layer_inversions(loop, layer_of) == [("mini_xception.model_card", "transfer.model")]
