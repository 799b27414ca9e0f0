"""Generated fixture archives with the real dogs-vs-cats nesting (importable by tests).

A plain module rather than conftest.py so that `from fixture_archives import write_archive`
cannot pick up another folder's conftest.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> bytes:
    """A small JPEG whose pixels depend on ``seed`` (a class-dependent tint helps learning)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def class_jpeg(c: int, n: int, image_size: tuple[int, int] = (40, 32)) -> bytes:
    """Image ``n`` of class ``c``: the first class dark, the others light (learnable)."""
    rng = np.random.default_rng(1000 * c + n)
    base = 60 if c == 0 else 190
    pixels = np.clip(rng.normal(base, 30, (image_size[1], image_size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_class_folders_zip(
    path: Path,
    per_class: int = 16,
    classes: Iterable[str] = ("Cat", "Dog"),
    root: str = "PetImages",
) -> Path:
    """A zip laid out like Microsoft's PetImages download: ``<root>/<Class>/<N>.jpg``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for c, name in enumerate(classes):
            for n in range(per_class):
                archive.writestr(f"{root}/{name}/{n}.jpg", class_jpeg(c, n))
            archive.writestr(f"{root}/{name}/Thumbs.db", b"\0")
    return path


def write_archive(
    path: Path,
    indices: Iterable[int] = range(16),
    classes: Iterable[str] = ("cat", "dog"),
    extra_members: dict[str, bytes] | None = None,
    image_size: tuple[int, int] = (40, 32),
) -> Path:
    """Write ``path`` as ``dogs-vs-cats.zip`` is nested: outer zip -> train.zip -> train/*.jpg.

    Cats are darker than dogs so that a tiny model can learn something.
    """
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as train_zip:
        for c, name in enumerate(classes):
            for n in indices:
                train_zip.writestr(f"train/{name}.{n}.jpg", class_jpeg(c, n, image_size))
        for member, data in (extra_members or {}).items():
            train_zip.writestr(member, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as outer:
        outer.writestr("train.zip", inner.getvalue())
    return path


def keras_arrays(
    per_class: tuple[int, int] = (6, 2), classes: int = 10, shape: tuple[int, ...] = (28, 28)
) -> dict[str, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` with ``per_class`` (train, test) images per class,
    in Keras' dtypes; an image's mean brightness tells its class (so a model can learn)."""
    arrays = {}
    for part, count in zip(("train", "test"), per_class, strict=True):
        labels = np.tile(np.arange(classes, dtype=np.uint8), count)
        rng = np.random.default_rng(len(labels))
        noise = rng.integers(0, 20, (len(labels), *shape))
        arrays[f"x_{part}"] = (labels.reshape(-1, *[1] * len(shape)) * 20 + noise).astype(np.uint8)
        arrays[f"y_{part}"] = labels
    return arrays


def write_mnist_npz(path: Path, **kwargs) -> Path:
    """An ``mnist.npz`` as Keras downloads it (``keras_arrays`` options)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **keras_arrays(**kwargs))
    return path


def write_fashion_folder(folder: Path, **kwargs) -> Path:
    """The four gzipped idx files Keras downloads for Fashion-MNIST."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    arrays = keras_arrays(**kwargs)
    names = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    for key, name in names.items():
        header = b"\0" * (16 if key.startswith("x_") else 8)  # magic + sizes (not read)
        with gzip.open(folder / name, "wb") as stream:
            stream.write(header + arrays[key].tobytes())
    return folder


def write_cifar_archive(path: Path, name: str = "cifar10", **kwargs) -> Path:
    """``cifar-10-python.tar.gz`` (or the cifar-100 one): pickled channels-first batches."""
    import pickle
    import tarfile

    classes = 10 if name == "cifar10" else 100
    arrays = keras_arrays(classes=classes, shape=(32, 32, 3), **kwargs)
    folder, train_members, test_member, label_key = {
        "cifar10": (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "test_batch",
            b"labels",
        ),
        "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels"),
    }[name]

    def batch(images: np.ndarray, labels: np.ndarray) -> bytes:
        data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        return pickle.dumps({b"data": data, label_key: labels.tolist()})

    parts = np.array_split(np.arange(len(arrays["y_train"])), len(train_members))
    members = {
        f"{folder}/{m}": batch(arrays["x_train"][rows], arrays["y_train"][rows])
        for m, rows in zip(train_members, parts, strict=True)
    }
    members[f"{folder}/{test_member}"] = batch(arrays["x_test"], arrays["y_test"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
