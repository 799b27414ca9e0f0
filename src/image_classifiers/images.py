"""Decode image files into fixed-size RGB ``uint8`` arrays.

Images are decoded once, by the data pipeline, so that training never touches a JPEG.
Everything a real-world image folder throws at a decoder ends up either as an
``(height, width, 3)`` RGB array or as an :class:`UnreadableImageError` that names the file
and says why: grayscale, CMYK and transparent images are converted, a PNG that is named
``.jpg`` is read by its content, and empty, truncated or non-image files are refused.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

#: Resampling filters accepted by ``decode_image(..., resample=...)``. PIL's filters are
#: antialiased when they shrink an image (the kernel widens with the scale factor), so
#: "bilinear" -- the Keras default -- gives clean thumbnails at a fraction of Lanczos' cost.
RESAMPLING_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

_WHITE = (255, 255, 255, 255)
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; ``str(error)`` names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"Cannot decode image '{name}': {reason}")
        self.name = name
        self.reason = reason


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """Validate ``image_size`` and return it as ``(height, width)``.

    Raises:
        ValueError: If it is not two positive integers.
    """
    try:
        height, width = (int(v) for v in image_size)
        valid = height > 0 and width > 0 and all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"image_size must be two positive integers [height, width], got {image_size!r}."
        )
    return height, width


def check_resample(resample: str) -> Image.Resampling:
    """Map a filter name such as ``"bilinear"`` to PIL's constant.

    Raises:
        ValueError: If the name is not one of :data:`RESAMPLING_FILTERS`.
    """
    try:
        return RESAMPLING_FILTERS[str(resample).lower()]
    except KeyError:
        raise ValueError(
            f"Unknown resampling filter {resample!r}; use one of {sorted(RESAMPLING_FILTERS)}."
        ) from None


def decode_image(
    source: bytes | str | Path,
    image_size: tuple[int, int],
    *,
    resample: str = "bilinear",
) -> np.ndarray:
    """Decode an image file (or its bytes) into an RGB ``uint8`` array of ``image_size``.

    The aspect ratio is not kept and EXIF orientation is not applied (both as in
    ``keras.utils.image_dataset_from_directory``, which the book uses): every image is
    resized to exactly ``image_size``. Transparent pixels are put on white.

    Args:
        source: The encoded bytes, or the path of the file.
        image_size: ``(height, width)`` of the result.
        resample: A name from :data:`RESAMPLING_FILTERS`.

    Returns:
        A ``(height, width, 3)`` ``uint8`` array.

    Raises:
        UnreadableImageError: If the file is missing, empty, truncated or not an image.
    """
    height, width = check_image_size(image_size)
    resample_filter = check_resample(resample)
    name, data = _read_source(source)
    if not data:
        raise UnreadableImageError(name, "the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # JPEG only (a no-op for other formats): decode at 1/2, 1/4 or 1/8 scale in the
            # DCT domain while staying at least as large as the target -- far less work
            # than decoding every pixel of a large photo only to throw most away.
            image.draft("RGB", (width, height))
            rgb = _to_rgb(image)
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), resample=resample_filter)
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # arbitrary bytes make decoders raise anything
        raise UnreadableImageError(name, _describe_failure(exc, data)) from exc


def decode_images(
    files: Sequence[str | Path],
    image_size: tuple[int, int],
    *,
    resample: str = "bilinear",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[int], list[UnreadableImageError]]:
    """Decode many files into one ``(N, height, width, 3)`` array, in parallel threads.

    Threads rather than processes: PIL releases the GIL while it decodes and resizes, so
    threads use every core without pickling pixels between processes, and each writes
    straight into the preallocated result.

    Args:
        files: Image paths, in the order wanted.
        image_size: ``(height, width)`` of every image.
        resample: A name from :data:`RESAMPLING_FILTERS`.
        workers: Threads to use; ``None`` means one per available CPU core.
        progress: Called as ``progress(done, total)`` after each image (in the caller's thread).

    Returns:
        ``(images, kept, failures)``: the decoded images in ``files`` order, the indices
        into ``files`` that they come from, and an error for every file that failed.
    """
    height, width = check_image_size(image_size)
    check_resample(resample)
    total = len(files)
    images = np.empty((total, height, width, 3), dtype=np.uint8)

    def decode_one(index: int) -> UnreadableImageError | None:
        try:
            images[index] = decode_image(files[index], (height, width), resample=resample)
        except UnreadableImageError as error:
            return error
        return None

    workers = max(1, workers or available_cpus())
    failures: dict[int, UnreadableImageError] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (index, error) in enumerate(
            zip(range(total), pool.map(decode_one, range(total)), strict=True), start=1
        ):
            if error is not None:
                failures[index] = error
            if progress is not None:
                progress(done, total)
    kept = [i for i in range(total) if i not in failures]
    if failures:
        images = images[kept]  # the only copy, and only when something was skipped
    return images, kept, list(failures.values())


def read_rows(images: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """``images[rows]`` as a new array, read from the file when ``images`` maps a whole one.

    Why not index the memory map: the kernel maps a file's page cache in large folios (up
    to megabytes), so touching a few scattered 48 KB rows of a memory map makes hundreds of
    megabytes resident in this process (clean, droppable page cache, but counted in its
    memory). Reading the rows with plain file reads copies only them.
    """
    filename = getattr(images, "filename", None)
    whole_file = (
        isinstance(images, np.memmap)
        and filename is not None
        and images.flags.c_contiguous
        and os.path.exists(filename)
        and os.path.getsize(filename) == images.offset + images.nbytes
    )
    if not whole_file:
        return np.array(images[rows])
    indices = np.arange(len(images))[rows]
    out = np.empty((len(indices), *images.shape[1:]), dtype=images.dtype)
    row_bytes = images.strides[0]
    with open(filename, "rb", buffering=0) as file:
        # Runs of consecutive rows (inference reads a slice) are one read each.
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for run in np.split(np.arange(len(indices)), breaks):
            if len(run) == 0:
                continue
            file.seek(images.offset + int(indices[run[0]]) * row_bytes)
            view = memoryview(out[run[0] : run[-1] + 1]).cast("B")
            while view:
                read = file.readinto(view)
                if not read:
                    raise OSError(f"'{filename}' is shorter than its header says.")
                view = view[read:]
    return out


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_source(source: bytes | str | Path) -> tuple[str, bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>", bytes(source)
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise UnreadableImageError(str(path), f"cannot read the file ({exc.strerror})") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit ... -> RGB; transparency composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float data would be clipped at 255 by convert("L"): scale it into 0-255.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    return image.convert("RGB")


def _describe_failure(exc: Exception, data: bytes) -> str:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, Image.UnidentifiedImageError):
        head = data[:16].lstrip()
        kind = "an HTML page" if head[:1] == b"<" else "not an image format PIL can read"
        return f"{kind} ({len(data)} bytes, starts with {data[:8]!r})"
    if "truncated" in message.lower():
        return f"the file is truncated or corrupt ({message})"
    return f"{type(exc).__name__}: {message}"
