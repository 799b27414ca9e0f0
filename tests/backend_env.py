"""The environment for a child process that runs Keras on a chosen backend, on the CPU.
Importable from any test folder (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import os

# XLA's CPU optimizations take seconds per op to compile and buy nothing at test sizes.
FAST_XLA_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def backend_env(backend: str) -> dict[str, str]:
    """``os.environ`` plus ``KERAS_BACKEND=backend``, JAX on the CPU unless the caller chose,
    quiet TensorFlow logs and fast XLA compilation (added to any ``XLA_FLAGS`` given)."""
    return {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {FAST_XLA_COMPILE}".strip(),
    }
