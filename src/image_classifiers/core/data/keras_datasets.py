"""The ``keras_datasets`` source: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 as arrays.

From ``keras.datasets.<name>.load_data()``, or, on an air-gapped machine, from the file Keras
would have downloaded (``download.local_path``). The extract step writes the arrays once; the
split refers to their rows (``x_train.npy#<row>``), so no image file is ever written.
"""

# ruff: noqa: SIM905 (split strings: as list literals, ruff format puts one name per line)
import gzip
import hashlib
import io
import json
import logging
import pickle
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from image_classifiers.core.images import RESAMPLING_FILTERS
from image_classifiers.core.params import ArchiveLimits, DownloadParams, ExtractParams, SplitParams

from .extract import STAMP_FILE, atomic_dir
from .inputs import MEGABYTE, ArchiveBudget, refused
from .split import MANIFEST_COLUMNS, SplitError, assign, log_counts

logger = logging.getLogger(__name__)

#: Class names per dataset, in label order.
CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": (
        "T-shirt_top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle_boot".split()
    ),
    "cifar10": "airplane automobile bird cat deer dog frog horse ship truck".split(),
    "cifar100": """
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
        butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
        couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster
        house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
        motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
        pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road
        rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
        streetcar sunflower sweet_pepper table tank telephone television tiger tractor train
        trout tulip turtle wardrobe whale willow_tree wolf woman worm
    """.split(),
}
ARRAY_FILES = ("x_train", "y_train", "x_test", "y_test")
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_CIFAR = {  # the folder in the archive, the training batches, the test batch, the label key
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "labels",
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels"),
}
_ROW = re.compile(r"\.npy#\d+$")
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError)

Arrays = dict[str, np.ndarray]


class KerasDatasetError(ValueError):
    """A local file not in Keras' format, or Keras cannot fetch; the message says what to do."""


def fetch_keras_dataset(download: DownloadParams, name: str) -> dict[str, Any]:
    """Check the local file (or have Keras download the dataset) and describe it."""
    path = Path(download.local_path).expanduser() if download.local_path else None
    arrays = _load(path, name)
    digest = None
    if path is not None and path.is_file():
        with open(path, "rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
    record = {
        "dataset": name,
        "path": None if path is None else str(path),
        "sha256": digest,
        "source": f"keras.datasets.{name}" if path is None else "local_path",
        "train": len(arrays["y_train"]),
        "test": len(arrays["y_test"]),
    }
    logger.info(
        "Keras dataset %s from %s: %d training and %d test images of %s.",
        name,
        path or record["source"],
        record["train"],
        record["test"],
        "x".join(map(str, arrays["x_train"].shape[1:])),
    )
    return record


def extract_keras_dataset(raw: dict[str, Any], extract: ExtractParams) -> dict[str, Any]:
    """Write the dataset's arrays into ``extract.target_dir`` (once; a stamp skips reruns)."""
    name, target = raw["dataset"], Path(extract.target_dir)
    stamp = {"dataset": name, "path": raw.get("path"), "sha256": raw.get("sha256")}
    record = {"path": str(target), "dataset": name, "classes": CLASS_NAMES[name]}
    try:
        saved = json.loads((target / STAMP_FILE).read_text())
    except (OSError, ValueError):
        saved = {}
    if {k: saved.get(k) for k in stamp} == stamp:
        logger.info("%s already holds the %s arrays; not writing them again.", target, name)
        return {**record, "train": saved["train"], "test": saved["test"]}
    arrays = _load(Path(raw["path"]) if raw.get("path") else None, name, extract.archive_limits)
    counts = {"train": len(arrays["y_train"]), "test": len(arrays["y_test"])}
    with atomic_dir(target) as tmp:
        for key in ARRAY_FILES:
            np.save(tmp / f"{key}.npy", arrays[key])
        (tmp / STAMP_FILE).write_text(json.dumps({**stamp, **counts}))
    logger.info("Wrote the %s arrays to %s.", name, target)
    return {**record, **counts}


def split_keras_dataset(
    extracted: dict[str, Any], split: SplitParams
) -> tuple[pd.DataFrame, list[str]]:
    """The dataset's own test set is the test split; train and validation come from its
    training set. ``split.classes``: null for the dataset's names, or as many new names."""
    dataset, folder = extracted["dataset"], Path(extracted["path"])
    names = CLASS_NAMES[dataset]
    if split.classes is not None and len(split.classes) != len(names):
        raise SplitError(
            f"split.classes renames the {len(names)} classes of {dataset} ({names[:10]}...), "
            f"so it needs {len(names)} names, got {len(split.classes)}. Or set "
            "split.classes=null to keep the dataset's names."
        )
    names = split.classes or names
    members = {}
    for part in ("train", "test"):
        labels, file = np.load(folder / f"y_{part}.npy"), (folder / f"x_{part}.npy").as_posix()
        members[part] = {
            name: dict(enumerate(f"{file}#{row}" for row in np.flatnonzero(labels == label)))
            for label, name in enumerate(names)
        }
    where = f"the {dataset} training set"
    plan = assign(members["train"], split, where, subsets=("train", "validation"))
    plan += [("test", c, ref) for c, refs in members["test"].items() for ref in refs.values()]
    manifest = pd.DataFrame([(ref, c, s) for s, c, ref in plan], columns=MANIFEST_COLUMNS)
    log_counts(manifest, f"Split {dataset} ({len(manifest)} images)")
    return manifest, names


def is_array_row(file: str) -> bool:
    """Whether a manifest ``file`` is a row of an extracted array (``x_train.npy#12``)."""
    return _ROW.search(file) is not None


def read_array_rows(files: list[str], image_size: tuple[int, int], resample: str) -> np.ndarray:
    """Rows ``<array>.npy#<row>`` as ``(N, height, width, channels)`` uint8 (channels kept)."""
    refs = [file.rsplit("#", 1) for file in files]
    arrays = {path: np.load(path, mmap_mode="r") for path in {path for path, _ in refs}}
    images = np.stack([arrays[path][int(row)] for path, row in refs])
    if images.shape[1:3] == tuple(image_size):
        return images
    (height, width), channels = image_size, images.shape[-1]
    resized = [  # PIL takes a grayscale image without its channel axis
        Image.fromarray(image[..., 0] if channels == 1 else image).resize(
            (width, height), resample=RESAMPLING_FILTERS[resample]
        )
        for image in images
    ]
    return np.stack(resized).reshape(len(images), height, width, channels)


def read_local_file(path: Path, name: str, limits: ArchiveLimits | None = None) -> Arrays:
    """Read a dataset file (or folder) in the format Keras downloads for ``name``: images
    ``(N, H, W, C)`` uint8, labels ``(N,)`` int64. No member over ``limits`` (the archive's
    headers say, before anything is read) is decompressed: a bomb costs no memory."""
    expected, budget = _expected(name), ArchiveBudget(limits or ArchiveLimits())
    if not path.exists():
        raise KerasDatasetError(
            f"download.local_path points at '{path}', which does not exist. Give the absolute "
            f"path of {expected}, or set download.local_path=null to let Keras download it."
        )
    try:
        if name in _CIFAR:
            arrays = _read_cifar(path, *_CIFAR[name], budget=budget)
        elif path.is_dir():
            arrays = _read_idx_folder(path, budget)
        elif not zipfile.is_zipfile(path):  # numpy would advise allow_pickle=True
            with path.open("rb") as file:
                raise KerasDatasetError(f"it is no .npz archive (it starts with {file.read(16)!r})")
        else:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    _within(budget, info, info.filename)
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in ARRAY_FILES if key not in data.files]
                if missing:
                    raise KerasDatasetError(
                        f"it lacks the arrays {missing} (it holds {data.files})"
                    )
                arrays = {key: data[key] for key in ARRAY_FILES}
    except tarfile.TarError:
        why = "it is not a tar archive"
    except KerasDatasetError as exc:
        why = str(exc)
    except _UNREADABLE as exc:
        why = f"{type(exc).__name__}: {exc}"
    else:
        return _checked(arrays, name)
    raise KerasDatasetError(f"download.local_path '{path}' is not {expected}: {why}.")


def _expected(name: str) -> str:
    if name == "mnist":
        return "a Keras mnist.npz (arrays x_train, y_train, x_test, y_test)"
    if name == "fashion_mnist":
        files = ", ".join(_FASHION_FILES.values())
        return f"the folder holding Keras' Fashion-MNIST files ({files}) or an .npz like mnist.npz"
    return f"Keras' {_CIFAR[name][0]} download (the .tar.gz or the folder it unpacks to)"


def _within(budget: ArchiveBudget, info: zipfile.ZipInfo | tarfile.TarInfo, name: str) -> None:
    """Raise if the member ``name`` is over the archive limits (from its header)."""
    if refusal := budget.refusal(info):
        raise KerasDatasetError(f"{name}: {refused(*refusal, 'extract')}")


def _read_idx_folder(folder: Path, budget: ArchiveBudget) -> Arrays:
    missing = [f for f in _FASHION_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise KerasDatasetError(f"the folder lacks {missing}")
    arrays = {}
    limit = budget.limits.max_member_mb * MEGABYTE
    for key, file in _FASHION_FILES.items():
        # A gzip file's header holds no size to trust: read one byte past the limit at most.
        with gzip.open(folder / file) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            why = f"over {budget.limits.max_member_mb} MB uncompressed"
            raise KerasDatasetError(f"{file}: {refused('max_member_mb', why, 'extract')}")
        # idx: a 4-byte magic, then one 4-byte size per dimension (labels 1, images 3).
        arrays[key] = np.frombuffer(data, np.uint8, offset=16 if key.startswith("x_") else 8)
    for part in ("train", "test"):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if images.size != len(labels) * 28 * 28:
            raise KerasDatasetError(f"the {part} images and labels do not match in number")
        arrays[f"x_{part}"] = images.reshape(len(labels), 28, 28)
    return arrays


def _read_cifar(
    path: Path, folder: str, train: list[str], test: str, label_key: str, *, budget: ArchiveBudget
) -> Arrays:
    if path.is_dir():
        root = path if (path / test).is_file() else path / folder
        pickles = [(root / member).read_bytes() for member in [*train, test]]
    else:
        with tarfile.open(path, "r:*") as tar:
            pickles = []
            for member in [*train, test]:
                info = tar.getmember(f"{folder}/{member}")
                _within(budget, info, info.name)
                pickles.append(tar.extractfile(info).read())
    batches = [_unpickle_batch(data, label_key) for data in pickles]
    return {
        "x_train": np.concatenate([images for images, _ in batches[:-1]]),
        "y_train": np.concatenate([labels for _, labels in batches[:-1]]),
        "x_test": batches[-1][0],
        "y_test": batches[-1][1],
    }


_PICKLE_ALLOWED = {  # numpy 2 renamed numpy.core to numpy._core: pickles name either
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickled dicts of NumPy arrays: allow that and nothing else, since a
    pickle can run arbitrary code and a local file may come from anywhere."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
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
        checked[f"x_{part}"], checked[f"y_{part}"] = images, labels.astype(np.int64)
    return checked


def _load(path: Path | None, name: str, limits: ArchiveLimits | None = None) -> Arrays:
    """The dataset's arrays from ``path``, or from Keras (downloading once) when None.
    The download step checks the file with the default limits (no real Keras file comes near
    them), the extract step with ``extract.archive_limits``."""
    if path is not None:
        return read_local_file(path, name, limits)
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # network errors surface as many types (URLError, OSError ...)
        raise KerasDatasetError(
            f"Keras could not download {name} ({type(exc).__name__}: {exc}). On a machine "
            f"without internet access, copy {_expected(name)} here and run with "
            '--params="<namespace>.download.local_path=/absolute/path".'
        ) from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _checked(arrays, name)
