"""decode_image / decode_images: what real image folders contain, and what they should not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifiers.core.images import UnreadableImageError, decode_image, decode_images


def _encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def _gradient(height: int = 32, width: int = 48) -> np.ndarray:
    """A smooth RGB image: JPEG keeps it well, so pixel values can be compared."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 128)], axis=-1
    ).astype(np.uint8)


def test_rgb_jpeg_is_resized_to_height_width(tmp_path):
    path = tmp_path / "cat.0.jpg"
    path.write_bytes(_encode(_gradient()))
    image = decode_image(path, (20, 30))
    assert image.shape == (20, 30, 3)
    assert image.dtype == np.uint8
    # Left-to-right red ramp, top-to-bottom green ramp survive the resize.
    assert image[10, 0, 0] < 30 and image[10, -1, 0] > 225
    assert image[0, 15, 1] < 30 and image[-1, 15, 1] > 225
    np.testing.assert_array_equal(image, decode_image(path.read_bytes(), (20, 30)))
    np.testing.assert_array_equal(image, decode_image(str(path), (20, 30)))


def test_same_size_is_not_resampled():
    pixels = _gradient()
    data = _encode(pixels, "PNG")
    np.testing.assert_array_equal(decode_image(data, (32, 48)), pixels)


def test_grayscale_jpeg_becomes_three_equal_channels():
    gray = _gradient()[..., 0]
    image = decode_image(_encode(gray, mode="L"), (16, 24))
    assert image.shape == (16, 24, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 1], image[..., 2])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = np.zeros((32, 48, 4), np.uint8)
    cmyk[..., 0] = 255  # full cyan: no red, full green and blue
    image = decode_image(_encode(cmyk, mode="CMYK"), (16, 24))
    assert image.shape == (16, 24, 3)
    assert image[..., 0].max() < 30
    assert image[..., 1].min() > 225 and image[..., 2].min() > 225


def test_png_named_jpg_is_read_by_its_content(tmp_path):
    path = tmp_path / "dog.3.jpg"
    path.write_bytes(_encode(_gradient(), "PNG"))
    np.testing.assert_array_equal(decode_image(path, (32, 48)), _gradient())


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    rgba[:4, :, :] = (255, 0, 0, 255)  # opaque red top half
    image = decode_image(_encode(rgba, "PNG"), (8, 8))
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image[-1, -1], [255, 255, 255])


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="PNG")
    image = decode_image(buffer.getvalue(), (8, 8))
    assert image[0, 0, 0] == 0
    assert image[-1, -1, 0] == 255
    assert len(np.unique(image[..., 0])) > 32  # not clipped into a few values


def test_large_jpeg_uses_reduced_decoding_and_matches_full_decode():
    big = np.kron(_gradient(60, 80), np.ones((10, 10, 1), np.uint8))  # 600 x 800
    data = _encode(big)
    fast = decode_image(data, (60, 80)).astype(int)
    full = np.asarray(
        Image.open(io.BytesIO(data)).resize((80, 60), Image.Resampling.BILINEAR)
    ).astype(int)
    assert np.abs(fast - full).mean() < 2.0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not pixels", "not an image format"),
        (b"<!DOCTYPE html><html></html>", "HTML page"),
    ],
)
def test_unreadable_bytes(tmp_path, data, reason):
    path = tmp_path / "cat.7.jpg"
    path.write_bytes(data)
    with pytest.raises(UnreadableImageError, match=reason) as error:
        decode_image(path, (8, 8))
    assert isinstance(error.value, ValueError)
    assert str(path) in str(error.value)
    assert error.value.name == str(path)


def test_truncated_jpeg(tmp_path):
    data = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cat.1.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="truncated"):
        decode_image(path, (8, 8))


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImageError, match="cannot read the file"):
        decode_image(tmp_path / "gone.jpg", (8, 8))


@pytest.mark.parametrize("size", [(0, 8), (8,), (8, 8.5), "180x180", None])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        decode_image(_encode(_gradient()), size)


def test_bad_resampling_filter():
    with pytest.raises(ValueError, match="bilinear"):
        decode_image(_encode(_gradient()), (8, 8), resample="smooth")


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_images_keeps_order_and_reports_failures(tmp_path, workers):
    files: list[Path] = []
    for i in range(7):
        path = tmp_path / f"cat.{i}.jpg"
        path.write_bytes(b"" if i in (2, 5) else _encode(_gradient() // (i + 1)))
        files.append(path)
    calls = []
    images, kept, failures = decode_images(
        files, (16, 24), workers=workers, progress=lambda done, total: calls.append((done, total))
    )
    assert kept == [0, 1, 3, 4, 6]
    assert images.shape == (5, 16, 24, 3)
    for row, index in enumerate(kept):
        np.testing.assert_array_equal(images[row], decode_image(files[index], (16, 24)))
    assert [f.name for f in failures] == [str(files[2]), str(files[5])]
    assert calls == [(i, 7) for i in range(1, 8)]


def test_decode_images_of_nothing():
    images, kept, failures = decode_images([], (4, 4))
    assert images.shape == (0, 4, 4, 3)
    assert kept == [] and failures == []
