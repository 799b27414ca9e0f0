"""The ``keras_datasets`` source: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 as arrays.

Without ``download.local_path`` the arrays come from ``keras.datasets.<name>.load_data()``
(Keras downloads once and caches in ``~/.keras/datasets``). On an air-gapped machine
``download.local_path`` names the file Keras itself would have downloaded, read here without
Keras' network code:

========================  ==========================================================
``mnist``                 ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``)
``fashion_mnist``         the folder holding Keras' four ``*-idx?-ubyte.gz`` files
                          (or an ``.npz`` laid out like ``mnist.npz``)
``cifar10``/``cifar100``  ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, or
                          the folder it unpacks to (``cifar-10-batches-py`` ...)
========================  ==========================================================

The extract step writes the arrays once into ``extract.target_dir`` (``x_train.npy`` ...
with a channel axis: grayscale stays one channel); the split step refers to their rows as
``<target_dir>/x_train.npy#<row>`` and the decode step reads those rows memory-mapped, so no
image file is ever written for these datasets.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle
import re
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from image_classifiers.images import UnreadableImageError, check_resample

from ._files import publish_dir, sha256_file, staging_dir

logger = logging.getLogger(__name__)

_FASHION = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]
_CIFAR10 = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
_CIFAR100 = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]

#: Class names per dataset, in label order.
CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": _FASHION,
    "cifar10": _CIFAR10,
    "cifar100": _CIFAR100,
}
KERAS_DATASETS = tuple(CLASS_NAMES)
ARRAY_FILES = ("x_train", "y_train", "x_test", "y_test")
STAMP_FILE = ".extracted.json"
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_CIFAR_MEMBERS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    "cifar100": ("cifar-100-python", ["train"], "test"),
}
_REFERENCE = re.compile(r"^(?P<path>.+\.npy)#(?P<row>\d+)$")

Arrays = dict[str, np.ndarray]


class KerasDatasetError(ValueError):
    """Unknown dataset name, or a local file not in Keras' format; the message says what to do."""


def check_dataset_name(name: Any) -> str:
    """The Keras dataset name, validated.

    Raises:
        KerasDatasetError: If ``name`` is not one of :data:`KERAS_DATASETS`.
    """
    if name not in CLASS_NAMES:
        raise KerasDatasetError(
            f"source.name must name a Keras dataset: one of {', '.join(KERAS_DATASETS)}; "
            f"got {name!r}."
        )
    return str(name)


def fetch_keras_dataset(download: dict[str, Any], name: str) -> dict[str, Any]:
    """Check the local file (or have Keras download the dataset) and describe it.

    Args:
        download: The ``download`` parameters; only ``local_path`` is read.
        name: A name from :data:`KERAS_DATASETS`.

    Returns:
        ``{"dataset", "path", "sha256", "source", "train", "test"}`` (image counts).

    Raises:
        KerasDatasetError: A missing or wrongly formatted local file, or Keras cannot fetch.
    """
    name = check_dataset_name(name)
    local = download.get("local_path")
    if local:
        path = Path(str(local)).expanduser()
        arrays = read_local_file(path, name)
        digest = sha256_file(path) if path.is_file() else None
        source = "local_path"
    else:
        arrays = _load_with_keras(name)
        path, digest, source = None, None, f"keras.datasets.{name}"
    record = {
        "dataset": name,
        "path": None if path is None else str(path),
        "sha256": digest,
        "source": source,
        "train": len(arrays["y_train"]),
        "test": len(arrays["y_test"]),
    }
    logger.info(
        "Keras dataset %s from %s: %d training and %d test images of %s.",
        name,
        path or source,
        record["train"],
        record["test"],
        "x".join(map(str, arrays["x_train"].shape[1:])),
    )
    return record


def extract_keras_dataset(raw: dict[str, Any], extract: dict[str, Any]) -> dict[str, Any]:
    """Write the dataset's arrays into ``extract.target_dir`` (once; a stamp skips reruns).

    Returns:
        ``{"path", "dataset", "classes", "train", "test"}``.
    """
    name = check_dataset_name(raw["dataset"])
    target = Path(extract["target_dir"])
    stamp = {"dataset": name, "path": raw.get("path"), "sha256": raw.get("sha256")}
    record = {"path": str(target), "dataset": name, "classes": CLASS_NAMES[name]}
    try:
        saved = json.loads((target / STAMP_FILE).read_text())
    except (OSError, ValueError):
        saved = None
    if saved and {k: saved.get(k) for k in stamp} == stamp:
        logger.info("%s already holds the %s arrays; not writing them again.", target, name)
        return {**record, "train": saved["train"], "test": saved["test"]}
    path = raw.get("path")
    arrays = read_local_file(Path(path), name) if path else _load_with_keras(name)
    counts = {"train": len(arrays["y_train"]), "test": len(arrays["y_test"])}
    with staging_dir(target) as tmp:
        for key in ARRAY_FILES:
            np.save(tmp / f"{key}.npy", arrays[key])
        (tmp / STAMP_FILE).write_text(json.dumps({**stamp, **counts}))
        publish_dir(tmp, target)
    logger.info("Wrote the %s arrays to %s.", name, target)
    return {**record, **counts}


def dataset_members(extracted: dict[str, Any]) -> dict[str, dict[int, list[str]]]:
    """The rows of the written arrays by part and label: ``{"train": {label: [ref, ...]}}``.

    A reference is ``<target_dir>/x_<part>.npy#<row>``, rows in the dataset's own order.
    """
    folder = Path(extracted["path"])
    members: dict[str, dict[int, list[str]]] = {}
    for part in ("train", "test"):
        labels = np.load(folder / f"y_{part}.npy")
        file = (folder / f"x_{part}.npy").as_posix()
        by_label: dict[int, list[str]] = {}
        for row, label in enumerate(labels.tolist()):
            by_label.setdefault(int(label), []).append(f"{file}#{row}")
        members[part] = by_label
    return members


def is_array_reference(file: str) -> bool:
    """Whether a manifest ``file`` is a row of an extracted array (``x.npy#12``)."""
    return _REFERENCE.match(str(file)) is not None


def decode_array_rows(
    files: Sequence[str],
    image_size: tuple[int, int],
    *,
    resample: str = "bilinear",
    progress: Callable[[int, int], None] | None = None,
    **_: Any,
) -> tuple[np.ndarray, list[int], list[UnreadableImageError]]:
    """Read rows ``<array>.npy#<row>`` into ``(N, height, width, channels)`` uint8.

    The same contract as ``images.decode_images`` (which reads files): channels are kept
    (grayscale stays one channel) and a row is resized only when its size differs.
    """
    height, width = image_size
    resample_filter = check_resample(resample)
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for file in files:
        match = _REFERENCE.match(str(file))
        if match is None:
            raise KerasDatasetError(f"'{file}' is not a row of an extracted array.")
        if match["path"] not in arrays:
            arrays[match["path"]] = np.load(match["path"], mmap_mode="r")
        rows.append((arrays[match["path"]], int(match["row"])))
    channels = rows[0][0].shape[-1] if rows else 3
    images = np.empty((len(rows), height, width, channels), dtype=np.uint8)
    for i, (array, row) in enumerate(rows, start=1):
        pixels = np.asarray(array[row])
        if pixels.shape[:2] != (height, width):
            pixels = _resize(pixels, (height, width), resample_filter)
        images[i - 1] = pixels
        if progress is not None:
            progress(i, len(rows))
    return images, list(range(len(rows))), []


def _resize(pixels: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    resized = np.asarray(image.resize((size[1], size[0]), resample=resample), dtype=np.uint8)
    return resized.reshape(*size, pixels.shape[-1])


def read_local_file(path: Path, name: str) -> Arrays:
    """Read a dataset file (or folder) in the format Keras downloads for ``name``.

    Returns:
        ``{"x_train", "y_train", "x_test", "y_test"}``; images ``(N, H, W, C)`` uint8, labels
        ``(N,)`` int64.

    Raises:
        KerasDatasetError: If ``path`` is missing or not in that format.
    """
    if not path.exists():
        raise KerasDatasetError(
            f"download.local_path points at '{path}', which does not exist. Give the absolute "
            f"path of {_expected(name)}, or set download.local_path=null to let Keras "
            "download it."
        )
    try:
        if name in _CIFAR_MEMBERS:
            arrays = _read_cifar(path, name)
        elif path.is_dir():
            arrays = _read_idx_folder(path)
        else:
            arrays = _read_npz(path)
    except KerasDatasetError as problem:
        raise KerasDatasetError(
            f"download.local_path '{path}' is not {_expected(name)}: {problem}"
        ) from None
    except tarfile.TarError:
        raise KerasDatasetError(
            f"download.local_path '{path}' is not {_expected(name)}: it is not a tar archive."
        ) from None
    except (
        OSError,
        ValueError,
        EOFError,
        KeyError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
    ) as exc:
        raise KerasDatasetError(
            f"download.local_path '{path}' is not {_expected(name)} ({type(exc).__name__}: "
            f"{exc}). Point it at the file Keras downloads for {name}."
        ) from None
    return _checked(arrays, name)


def _expected(name: str) -> str:
    if name == "mnist":
        return "a Keras mnist.npz (arrays x_train, y_train, x_test, y_test)"
    if name == "fashion_mnist":
        return (
            "the folder holding Keras' Fashion-MNIST files ("
            + ", ".join(_FASHION_FILES.values())
            + ") or an .npz laid out like mnist.npz"
        )
    return f"Keras' {_CIFAR_MEMBERS[name][0]} download (the .tar.gz or the folder it unpacks to)"


def _read_npz(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ARRAY_FILES if key not in data.files]
        if missing:
            raise KerasDatasetError(f"it lacks the arrays {missing} (it holds {data.files})")
        return {key: data[key] for key in ARRAY_FILES}


def _read_idx_folder(folder: Path) -> Arrays:
    missing = [f for f in _FASHION_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise KerasDatasetError(f"the folder lacks {missing}")
    arrays = {}
    for key, file in _FASHION_FILES.items():
        with gzip.open(folder / file, "rb") as stream:
            data = stream.read()
        # idx format: a 4-byte magic, then one 4-byte size per dimension (labels 1, images 3).
        offset = 16 if key.startswith("x_") else 8
        if len(data) < offset:
            raise KerasDatasetError(f"'{file}' is too short to be an idx file")
        arrays[key] = np.frombuffer(data, np.uint8, offset=offset)
    for part in ("train", "test"):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if images.size != len(labels) * 28 * 28:
            raise KerasDatasetError(f"the {part} images and labels do not match in number")
        arrays[f"x_{part}"] = images.reshape(len(labels), 28, 28)
    return arrays


def _read_cifar(path: Path, name: str) -> Arrays:
    folder, train_members, test_member = _CIFAR_MEMBERS[name]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    if path.is_dir():
        root = path if (path / test_member).is_file() else path / folder
        reader = lambda member: (root / member).read_bytes()  # noqa: E731
        batches = [_unpickle_batch(reader(m), label_key) for m in [*train_members, test_member]]
    else:
        with tarfile.open(path, "r:*") as tar:
            batches = [
                _unpickle_batch(_tar_member(tar, f"{folder}/{m}"), label_key)
                for m in [*train_members, test_member]
            ]
    x_train = np.concatenate([b[0] for b in batches[:-1]])
    y_train = np.concatenate([b[1] for b in batches[:-1]])
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": batches[-1][0],
        "y_test": batches[-1][1],
    }


def _tar_member(tar: tarfile.TarFile, member: str) -> bytes:
    try:
        stream = tar.extractfile(member)
    except KeyError:
        stream = None
    if stream is None:
        raise KerasDatasetError(f"the archive has no member '{member}'")
    return stream.read()


_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickled dicts of NumPy arrays: allow that and nothing else.

    A pickle can run arbitrary code, and a local file may come from anywhere.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _unpickle_batch(data: bytes, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise KerasDatasetError("a batch is not a pickled dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise KerasDatasetError(f"a batch lacks 'data' or '{label_key}'")
    pixels = np.asarray(batch["data"], dtype=np.uint8)
    if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise KerasDatasetError(f"a batch's data has shape {pixels.shape}, not (N, 3072)")
    # Stored channels-first, one row per image; the project works channels-last.
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[label_key]).reshape(-1)


def _checked(arrays: Arrays, name: str) -> Arrays:
    classes = len(CLASS_NAMES[name])
    checked = {}
    for part in ("train", "test"):
        images = np.asarray(arrays[f"x_{part}"])
        labels = np.asarray(arrays[f"y_{part}"]).reshape(-1)
        if images.ndim == 3:
            images = images[..., np.newaxis]  # grayscale: keep one channel
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise KerasDatasetError(
                f"{name}: expected uint8 images (N, H, W[, C]) and N labels for {part}, got "
                f"{images.dtype} {images.shape} and {labels.shape}."
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise KerasDatasetError(
                f"{name}: {part} labels must lie in 0..{classes - 1}, got "
                f"{labels.min()}..{labels.max()}."
            )
        checked[f"x_{part}"] = images
        checked[f"y_{part}"] = labels.astype(np.int64)
    return checked


def _load_with_keras(name: str) -> Arrays:
    import keras

    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # network errors surface as many types (URLError, OSError ...)
        raise KerasDatasetError(
            f"Keras could not download {name} ({type(exc).__name__}: {exc}). On a machine "
            f"without internet access, copy {_expected(name)} here and run with "
            '--params="<namespace>.download.local_path=/absolute/path".'
        ) from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _checked(arrays, name)
