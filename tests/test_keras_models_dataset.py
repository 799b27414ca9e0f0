"""KerasModelsDataset (retrain's challengers): what a node saves is what the next loads, and
an empty save replaces the last run's models."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from kedro.io import DatasetError

from image_classifiers.datasets.keras_models import KerasModelsDataset


def small_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def test_models_load_as_they_were_saved_and_none_replaces_them(tmp_path):
    dataset = KerasModelsDataset(str(tmp_path / "challengers"))
    with pytest.raises(DatasetError, match="No models at"):
        dataset.load()
    model = small_model()
    dataset.save({"tiny": model})

    loaded = dataset.load()

    assert list(loaded) == ["tiny"]
    x = np.ones((2, 4), dtype="float32")
    np.testing.assert_allclose(loaded["tiny"].predict(x, verbose=0), model.predict(x, verbose=0))
    # A run that trains nothing must not hand the last run's challenger to the next node.
    dataset.save({})
    assert dataset.load() == {}
    # No temporary folder or earlier version left: the link, its lock and the current version.
    expected = ["challengers", ".challengers.lock", os.readlink(tmp_path / "challengers")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
