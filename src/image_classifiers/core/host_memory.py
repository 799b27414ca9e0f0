"""Undo TensorFlow's process-wide malloc setting that halves CPU training speed.

TensorFlow 2.21 calls ``mallopt(M_TRIM_THRESHOLD, 128 KiB)`` when the first
``from_generator`` iterator starts (Keras feeds every ``PyDataset`` through it), which
switches off glibc's adaptive mmap threshold: every convolution buffer is then mmapped and
page-faulted afresh. Measured (2-core CPU, mini-Xception at 64x64): 6.2 million page faults
and 21 s of kernel time per epoch, against 0.2 million and 1.7 s with the thresholds put back
where glibc's own rule settles. Nothing is done on other backends or C libraries.
"""

import ctypes
import ctypes.util
import logging
import platform
from functools import cache

import keras

logger = logging.getLogger(__name__)

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's ceiling for the adaptive mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); the
# adaptive rule keeps the trim threshold at twice the mmap threshold.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def restore_malloc_thresholds() -> bool:
    """Set glibc's mmap and trim thresholds where its adaptive rule settles; False if not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 for a value it refuses.
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


class RestoreMallocThresholds(keras.callbacks.Callback):
    """On TensorFlow, restore the thresholds at the first batch of each ``fit``/``predict``
    (by then TensorFlow has started the generator that sets its own)."""

    def __init__(self) -> None:
        super().__init__()
        self._active = keras.backend.backend() == "tensorflow"

    def _restore(self, batch: int) -> None:
        if self._active and batch == 0 and not restore_malloc_thresholds():
            logger.debug("Not glibc: malloc thresholds left as they are.")
            self._active = False

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._restore(batch)

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._restore(batch)
