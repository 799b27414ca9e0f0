"""Benchmark: peak memory of decoding and training does not grow with the dataset.

Makes N synthetic photos from the dogs-vs-cats sample (each photo flipped and cropped in
up to eight ways, saved as JPEGs), then, in a fresh process per N: decodes them at
128x128 with the pipeline's decode node (chunk by chunk into the split's ``.npy`` file),
saves and memory-maps the set with ``ImageSetDataset``, and trains a small convnet for a
few dozen steps with the training code's ``ImageBatches`` (reshuffled, fixed-shape batches
read from the memory map). Prints each run's peak resident memory (``ru_maxrss``, which
counts the file pages a memory map has touched) and the peak anonymous memory (the part
that cannot be dropped for the file), and writes them to ``--output``::

    python benchmarks/larger_than_ram.py --archive ../shared/datasets/dogs-vs-cats.zip \\
        --sizes 10000 40000 --output benchmarks/results/larger_than_ram_cpu_2core.json

Target: the peak resident memory of N = 10,000 and N = 40,000 (0.5 and 2 GB of pixels at
128x128) differs by less than 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _results import write_results
from PIL import Image

CLASSES = ["cat", "dog"]
TARGET_MB = 300
VARIANTS = 8  # 2 mirror images x 4 crops of every photo
MB = 2**20


def _photos(archive: Path) -> list[tuple[str, bytes]]:
    """``(name, jpeg bytes)`` of every photo of the nested sample archive."""
    with zipfile.ZipFile(archive) as outer:
        inner_name = next(n for n in outer.namelist() if n.endswith(".zip"))
        with zipfile.ZipFile(io.BytesIO(outer.read(inner_name))) as inner:
            names = sorted(n for n in inner.namelist() if n.lower().endswith(".jpg"))
            return [(Path(n).name, inner.read(n)) for n in names]


def _variant(data: bytes, variant: int, size: int) -> bytes:
    """The photo squared, cropped at one of four corners and optionally mirrored."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size * 2, size * 2))
        rgb = image.convert("RGB").resize((size * 5 // 4, size * 5 // 4))
    corner = variant % 4
    left, top = (corner % 2) * (size // 4), (corner // 2) * (size // 4)
    crop = rgb.crop((left, top, left + size, top + size))
    if variant // 4:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_images(archive: Path, folder: Path, count: int, size: int) -> list[Path]:
    """``count`` synthetic JPEGs in ``folder`` (reused when already there)."""
    photos = _photos(archive)
    if count > len(photos) * VARIANTS:
        raise SystemExit(f"At most {len(photos) * VARIANTS} images from this archive.")
    folder.mkdir(parents=True, exist_ok=True)

    def one(index: int) -> Path:
        name, data = photos[index % len(photos)]
        path = folder / f"{Path(name).stem}.v{index // len(photos)}.jpg"
        if not path.exists():
            path.write_bytes(_variant(data, index // len(photos), size))
        return path

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(count)))


class _MemorySampler:
    """Peak anonymous resident memory (RssAnon), sampled every 50 ms in a thread."""

    def __init__(self) -> None:
        self.peak_anon_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self) -> None:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    self.peak_anon_kb = max(self.peak_anon_kb, int(line.split()[1]))

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def say(line: str) -> None:
    """A result line on stdout (the benchmark's output, not a log message)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def child(files: list[str], workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Decode ``files`` into a memory-mapped set and train on it; measure memory."""
    import keras
    import pandas as pd

    from image_classifiers.core.models import build_classifier
    from image_classifiers.core.params import DecodeParams, TrainingParams
    from image_classifiers.core.training import ImageBatches, compile_model
    from image_classifiers.datasets import ImageSetDataset
    from image_classifiers.pipelines.data_processing.nodes import decode_split

    result: dict[str, Any] = {"images": len(files), "rss_mb_after_imports": _peak_rss_mb()}
    with _MemorySampler() as sampler:
        labels = [Path(f).name.split(".")[0] for f in files]
        manifest = pd.DataFrame({"file": files, "class": labels, "subset": "train"})
        decode = DecodeParams(
            image_size=[args.image_size, args.image_size],
            chunk_size=args.chunk_size,
            scratch_dir=str(workdir),
            log_every=10**9,
        )
        start = time.perf_counter()
        image_set, quality = decode_split(manifest, decode, CLASSES, "train")
        ImageSetDataset(str(workdir / "train")).save(image_set)
        del image_set
        result["decode_seconds"] = time.perf_counter() - start
        result["decoded"] = quality["decoded"]
        result["peak_rss_mb_after_decode"] = _peak_rss_mb()

        train = ImageSetDataset(str(workdir / "train")).load()
        assert isinstance(train["images"], np.memmap)
        result["pixels_mb"] = train["images"].nbytes / MB
        keras.utils.set_random_seed(0)
        model = build_classifier(
            "simple_convnet", train["images"].shape[1:], 2, filters=(16, 32, 64), dropout=0.0
        )
        compile_model(model, TrainingParams(learning_rate=1e-3, batch_size=args.batch_size))
        batches = ImageBatches(
            train["images"],
            train["labels"].astype(np.float32).reshape(-1, 1),
            args.batch_size,
            shuffle=True,
            seed=0,
        )
        start = time.perf_counter()
        history = model.fit(batches, epochs=1, steps_per_epoch=args.steps, shuffle=False, verbose=0)
        result["train_seconds"] = time.perf_counter() - start
        result["train_steps"] = args.steps
        result["train_loss"] = float(history.history["loss"][-1])
    result["peak_rss_mb"] = _peak_rss_mb()
    result["peak_anon_rss_mb"] = sampler.peak_anon_kb / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--source-size", type=int, default=160, help="synthetic JPEG side")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=512, help="decode.chunk_size")
    parser.add_argument("--work", type=Path, help="folder for the images (default: temp)")
    parser.add_argument("--output", type=Path, help="write the figures here (JSON)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.child is not None:
        files = sorted(str(p) for p in (args.work / "images").glob("*.jpg"))[: args.child]
        say(json.dumps(child(files, args.child_dir, args)))
        return

    with tempfile.TemporaryDirectory(prefix="larger-than-ram-") as tmp:
        work = args.work or Path(tmp)
        start = time.perf_counter()
        files = make_images(args.archive, work / "images", max(args.sizes), args.source_size)
        say(f"{len(files)} synthetic images in {time.perf_counter() - start:.0f} s")
        runs = []
        for size in args.sizes:
            child_dir = Path(tempfile.mkdtemp(prefix=f"n{size}-", dir=work))
            command = [sys.executable, __file__, *sys.argv[1:], "--work", str(work)]
            command += ["--child", str(size), "--child-dir", str(child_dir)]
            # The child's log and errors go to stderr as they come; its figures to stdout.
            output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            run = json.loads(output.strip().splitlines()[-1])
            runs.append(run)
            subprocess.run(["rm", "-rf", str(child_dir)], check=True)
            say(
                f"N={size}: {run['pixels_mb']:.0f} MB of pixels, decode "
                f"{run['decode_seconds']:.0f} s, {run['train_steps']} steps "
                f"{run['train_seconds']:.0f} s; peak RSS {run['peak_rss_mb']:.0f} MB (after "
                f"decode {run['peak_rss_mb_after_decode']:.0f}), peak anonymous RSS "
                f"{run['peak_anon_rss_mb']:.0f} MB"
            )
    spread = max(r["peak_rss_mb"] for r in runs) - min(r["peak_rss_mb"] for r in runs)
    verdict = "met" if spread < TARGET_MB else "NOT met"
    say(f"Peak RSS spread {spread:.0f} MB (target < {TARGET_MB} MB): {verdict}")
    if args.output:
        import keras

        record = {
            "benchmark": "larger_than_ram",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "keras_backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "image_size": args.image_size,
            "runs": runs,
            "peak_rss_spread_mb": spread,
            "target_mb": TARGET_MB,
        }
        write_results(args.output, record)


if __name__ == "__main__":
    main()
