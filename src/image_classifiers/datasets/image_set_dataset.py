"""A decoded image set on disk, a folder: ``images.npy`` (uint8, (N, height, width, 3), loaded
memory-mapped), ``labels.npy`` (int32, (N,)), ``meta.json`` (``{"classes": [], "files": []}``).

Memory-mapped, a split may be larger than RAM and no JPEG is decoded per epoch; writes are
chunked, and a ``staged_images_file`` is published by moving it, not copying it. A set saved
with a ``manifest`` records its SHA-256; loading it checks the manifest is still that one."""

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from image_classifiers.core.images import read_rows

from .atomic import atomic_folder, owned_prefix, remove_orphans

ImageSet = dict[str, Any]
_REQUIRED_KEYS = ("images", "labels", "classes", "files")
COPY_CHUNK = 512  # images per write step when a set is written chunk by chunk
_STAGED: set[str] = set()  # staged_images_file()'s files in this process: a save moves them


class ImagesFileWriter:
    """Appends uint8 images ``(n, H, W, C)`` to a ``.npy`` file (its header gets the count on
    close); plain writes, not a writable memory map, keep the pixels out of this process."""

    def __init__(self, path: str | Path, image_shape: tuple[int, ...]):
        self.path = Path(path)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.count = 0
        self._file = self.path.open("wb")
        self._write_header()

    def _write_header(self) -> None:
        shape = (self.count, *self.image_shape)
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
        self._file.seek(0)
        np.lib.format.write_array_header_1_0(self._file, header)

    def append(self, images: np.ndarray) -> None:
        """Write ``images`` (uint8, ``(n, *image_shape)``) after those written so far."""
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != self.image_shape:
            raise DatasetError(
                f"Expected uint8 images of shape {self.image_shape}, got {images.dtype} "
                f"{tuple(images.shape[1:])}."
            )
        self._file.seek(0, os.SEEK_END)
        self._file.write(np.ascontiguousarray(images).data)
        self.count += len(images)

    def close(self) -> None:
        """Record the final image count in the header and close the file."""
        if not self._file.closed:
            self._write_header()
            self._file.close()


def staged_images_file(directory: str | Path) -> Path:
    """A new, empty ``.npy`` file in ``directory`` for a split's pixels: an image set saved
    with it memory-mapped moves it into place. Delete it if the set is never saved."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_orphans(directory, ".staged-images-")
    prefix = owned_prefix(".staged-images-")
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".npy", dir=directory)
    os.close(handle)
    os.chmod(name, 0o644)  # mkstemp makes it private; the published file should not be
    _STAGED.add(os.path.realpath(name))
    return Path(name)


def _staged_file(images: Any) -> str | None:
    """The staged file ``images`` maps, if it maps all of one (see staged_images_file)."""
    filename = getattr(images, "filename", None)
    if not isinstance(images, np.memmap) or filename is None:
        return None
    path = os.path.realpath(filename)
    if path not in _STAGED or not os.path.exists(path):
        return None
    # A slice of the file (images[:k], images[::2]) must be copied, not the whole file moved.
    whole = images.flags.c_contiguous and os.path.getsize(path) == images.offset + images.nbytes
    return path if whole else None


def _write_images(path: Path, images: Any) -> None:
    """``np.save`` chunk by chunk, so a memory-mapped source is never read whole into RAM."""
    with closing(ImagesFileWriter(path, images.shape[1:])) as writer:
        for start in range(0, len(images), COPY_CHUNK):
            writer.append(read_rows(images, slice(start, start + COPY_CHUNK)))


def _sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


class ImageSetDataset(AbstractDataset[ImageSet, ImageSet]):
    """Saves and loads an image set dict ``{"images", "labels", "classes", "files"}``
    (``mmap``: load ``images.npy`` memory-mapped, read-only; ``manifest``: the split manifest
    it is decoded from, checked on load). Saves switch versions (``atomic_folder``)."""

    def __init__(
        self,
        filepath: str,
        mmap: bool = True,
        manifest: str | None = None,
        metadata: dict | None = None,
    ):
        self._path = Path(filepath)
        self._mmap = mmap
        self._manifest = Path(manifest) if manifest else None
        self.metadata = metadata

    def load(self) -> ImageSet:
        for attempt in range(3):  # a writer may delete the version just resolved: read anew
            try:
                meta, images, labels = self._read()
                break
            except FileNotFoundError:
                if attempt == 2 or not self._exists():
                    raise DatasetError(
                        f"No decoded image set at '{self._path}'. Run the data pipeline "
                        "first: kedro run --pipelines=data_processing"
                    ) from None
        recorded = meta.pop("manifest_sha256", None)
        if recorded and self._manifest and recorded != _sha256(self._manifest):
            raise DatasetError(
                f"The image set '{self._path}' was not decoded from the split manifest "
                f"'{self._manifest}' as it is now (a data run stopped after its split step, "
                "or the manifest changed): run the data pipeline again, e.g. "
                "kedro run --pipelines=data_processing"
            )
        return {"images": images, "labels": labels, **meta}

    def _read(self) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        folder = self._path.resolve()  # one version, whatever a writer switches meanwhile
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r" if self._mmap else None)
        return meta, images, np.load(folder / "labels.npy")

    def save(self, data: ImageSet) -> None:
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise DatasetError(f"Image set is missing keys {missing}; expected {_REQUIRED_KEYS}.")
        images = np.asanyarray(data["images"])  # a memory map stays one
        labels = np.asarray(data["labels"], dtype=np.int32)
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise DatasetError(
                f"Expected uint8 images (N, H, W, C) and N labels, got {images.dtype} "
                f"{images.shape} and {labels.shape}."
            )
        # A crash never leaves a half-written set that a later run would load as complete.
        with atomic_folder(self._path) as tmp:
            staged = _staged_file(images)
            if staged is not None:
                shutil.move(staged, tmp / "images.npy")  # a rename on the same file system
                _STAGED.discard(staged)
            else:
                _write_images(tmp / "images.npy", images)
            np.save(tmp / "labels.npy", labels)
            meta = {"classes": list(data["classes"]), "files": [str(f) for f in data["files"]]}
            if digest := _sha256(self._manifest):
                meta["manifest_sha256"] = digest
            (tmp / "meta.json").write_text(json.dumps(meta))

    def _exists(self) -> bool:
        return (self._path / "meta.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "mmap": self._mmap, "manifest": self._manifest}
