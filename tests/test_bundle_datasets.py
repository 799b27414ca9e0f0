"""The files between the retrain nodes (image_classifiers.datasets.bundles): what a
node saves is what the next one loads, in another process too, and a failed save keeps the
previous bundle."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from kedro.io import DatasetError

from image_classifiers.datasets.bundles import (
    ImageSetBundleDataset,
    KerasModelsDataset,
)


def incoming(n_new: int, n_pool: int) -> dict:
    """Shaped like retrain's collect_images output: new images, their fields and the pool."""
    rng = np.random.default_rng(0)

    def pixels(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)

    return {
        "images": pixels(n_new),
        "labels": np.arange(n_new, dtype=np.int32) % 2,
        "classes": ["cat", "dog"],
        "files": [f"cat/{i}.jpg" for i in range(n_new)],
        "sha256": [f"{i:064x}" for i in range(n_new)],
        "sources": [{"file": f"cat/{i}.jpg", "path": f"/in/cat/{i}.jpg"} for i in range(n_new)],
        "rejected": [{"file": "x.txt", "reason": "not an image"}],
        "duplicates": [],
        "run_id": "20260101T000000-abcdef",
        "source": "/in",
        "pool": {
            "images": pixels(n_pool),
            "labels": np.zeros(n_pool, dtype=np.int32),
            "files": [f"old/{i}.jpg" for i in range(n_pool)],
            "sha256": [f"{i + 100:064x}" for i in range(n_pool)],
        },
    }


@pytest.mark.parametrize(("n_new", "n_pool"), [(3, 2), (0, 0)])
def test_an_image_bundle_loads_as_it_was_saved(tmp_path, n_new, n_pool):
    data = incoming(n_new, n_pool)
    dataset = ImageSetBundleDataset(str(tmp_path / "images"))
    dataset.save(data)

    loaded = dataset.load()

    assert set(loaded) == set(data)
    assert set(loaded["pool"]) == set(data["pool"])
    for part in (loaded, loaded["pool"]):
        assert part["images"].dtype == np.uint8 and part["labels"].dtype == np.int32
    np.testing.assert_array_equal(loaded["images"], data["images"])
    np.testing.assert_array_equal(loaded["pool"]["images"], data["pool"]["images"])
    np.testing.assert_array_equal(loaded["labels"], data["labels"])
    assert loaded["pool"]["sha256"] == data["pool"]["sha256"]
    for key in ("files", "sha256", "sources", "rejected", "duplicates", "run_id", "source"):
        assert loaded[key] == data[key]


def test_a_failed_bundle_save_keeps_the_previous_one(tmp_path):
    dataset = ImageSetBundleDataset(str(tmp_path / "images"))
    dataset.save(incoming(3, 2))

    with pytest.raises(DatasetError, match="JSON"):
        dataset.save({**incoming(1, 1), "run_id": object()})

    assert dataset.load()["files"] == incoming(3, 2)["files"]
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # no temporary folder left
    with pytest.raises(DatasetError, match="Nothing saved at"):
        ImageSetBundleDataset(str(tmp_path / "missing")).load()


def small_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def test_models_load_as_they_were_saved_and_none_replaces_them(tmp_path):
    dataset = KerasModelsDataset(str(tmp_path / "challengers"))
    model = small_model()
    dataset.save({"tiny": model})

    loaded = dataset.load()

    assert list(loaded) == ["tiny"]
    x = np.ones((2, 4), dtype="float32")
    np.testing.assert_allclose(loaded["tiny"].predict(x, verbose=0), model.predict(x, verbose=0))
    # A run that trains nothing must not hand the last run's challenger to the next node.
    dataset.save({})
    assert dataset.load() == {}
