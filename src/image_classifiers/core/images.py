"""Decode image files into fixed-size RGB ``uint8`` arrays, once, so training never touches a JPEG.

Grayscale, CMYK, 16-bit and transparent images are converted, a PNG named ``.jpg`` is read by
its content; empty, truncated or non-image files raise :class:`UnreadableImageError`.
"""

import io
import operator
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image

#: Resampling filters by name. PIL's filters are antialiased when they shrink (the kernel
#: widens with the scale), so "bilinear", the Keras default, gives clean thumbnails cheaply.
RESAMPLING_FILTERS: dict[str, Image.Resampling] = {
    name: Image.Resampling[name.upper()]
    for name in ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
}


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; ``str(error)`` names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"Cannot decode image '{name}': {reason}")
        self.name = name
        self.reason = reason


def decode_image(
    source: bytes | str | Path, image_size: Sequence[int], *, resample: str = "bilinear"
) -> np.ndarray:
    """Decode an image file (or its bytes) into an RGB ``uint8`` array of ``image_size``.

    Resized to exactly ``(height, width)``, without keeping the aspect ratio or applying EXIF
    orientation, as ``keras.utils.image_dataset_from_directory`` does; transparent pixels
    are put on white.
    """
    height, width = _checked_size(image_size)
    if resample not in RESAMPLING_FILTERS:
        raise ValueError(
            f"Unknown resampling filter {resample!r}; use one of {sorted(RESAMPLING_FILTERS)}."
        )
    if isinstance(source, bytes | bytearray | memoryview):
        name, data = "<bytes>", bytes(source)
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UnreadableImageError(name, f"cannot read the file ({exc.strerror})") from exc
    if not data:
        raise UnreadableImageError(name, "the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale in the DCT domain while staying at
            # least as large as the target, far less work for a large photo.
            image.draft("RGB", (width, height))
            rgb = _to_rgb(image)
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), resample=RESAMPLING_FILTERS[resample])
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # arbitrary bytes make decoders raise anything
        raise UnreadableImageError(name, _describe_failure(exc, data)) from exc


def decode_images(
    files: Sequence[str | Path],
    image_size: Sequence[int],
    *,
    resample: str = "bilinear",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[int], list[UnreadableImageError]]:
    """Decode many files into one ``(N, height, width, 3)`` array, in threads.

    Threads, not processes: PIL releases the GIL while it decodes and resizes, so threads use
    every core and write straight into the result, with no pixels pickled between processes.
    Returns ``(images, kept, failures)``: ``kept`` indexes ``files``; ``progress(done, total)``
    is called after each image.
    """
    height, width = _checked_size(image_size)
    images = np.empty((len(files), height, width, 3), dtype=np.uint8)

    def decode_one(index: int) -> UnreadableImageError | None:
        try:
            images[index] = decode_image(files[index], (height, width), resample=resample)
        except UnreadableImageError as error:
            return error
        return None

    failures: dict[int, UnreadableImageError] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers or available_cpus())) as pool:
        for index, error in enumerate(pool.map(decode_one, range(len(files)))):
            if error is not None:
                failures[index] = error
            if progress is not None:
                progress(index + 1, len(files))
    kept = [i for i in range(len(files)) if i not in failures]
    if failures:
        images = images[kept]  # the only copy, and only when something was skipped
    return images, kept, list(failures.values())


def read_rows(images: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """``images[rows]`` as a new array, read from the file when ``images`` maps a whole one.

    Why not index the memory map: the kernel maps a file's page cache in large folios (up to
    megabytes), so touching a few scattered 48 KB rows makes hundreds of megabytes resident
    in this process. Plain file reads copy only the rows.
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
    with open(filename, "rb") as file:
        # Runs of consecutive rows (inference reads a slice) are one read each; a buffered
        # readinto reads until the view is full or the file ends.
        starts = np.flatnonzero(np.diff(indices, prepend=-2) != 1)
        for start, stop in pairwise([*starts, len(indices)]):
            file.seek(images.offset + int(indices[start]) * images.strides[0])
            view = memoryview(out[start:stop]).cast("B")
            if file.readinto(view) < len(view):
                raise OSError(f"'{filename}' is shorter than its header says.")
    return out


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _checked_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = map(operator.index, image_size)
    except (TypeError, ValueError):
        height = width = 0
    if height <= 0 or width <= 0:
        raise ValueError(
            f"image_size must be two positive integers [height, width], got {image_size!r}."
        )
    return height, width


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit ... -> RGB; transparency composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # convert("L") would clip 16-bit/float data at 255: scale it into 0-255 instead.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = pixels.min(), pixels.max()
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    return image.convert("RGB")


def _describe_failure(exc: Exception, data: bytes) -> str:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, Image.UnidentifiedImageError):
        kind = "an HTML page" if data.lstrip()[:1] == b"<" else "not an image format PIL can read"
        return f"{kind} ({len(data)} bytes, starts with {data[:8]!r})"
    if "truncated" in message.lower():
        return f"the file is truncated or corrupt ({message})"
    return f"{type(exc).__name__}: {message}"
