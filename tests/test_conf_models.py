"""Every named model configuration in conf/base builds with the options it lists."""

from pathlib import Path

import pytest
import yaml

from image_classifiers.core.models import build_classifier

CONF = Path(__file__).parents[1] / "conf" / "base" / "parameters_model_training.yml"
MODELS = yaml.safe_load(CONF.read_text())["models"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_configured_model_builds(name):
    options = dict(MODELS[name])
    architecture = options.pop("architecture")
    augmentation = {"rotation": 0.1}
    model = build_classifier(architecture, (96, 96, 3), 2, augmentation=augmentation, **options)
    assert model.output_shape == (None, 1)
