"""Shared test fixtures: small generated archives with the real archive's nesting."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fixture_archives import write_archive

# Tests run on the default backend unless the caller chose one; keep TF quiet on CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests copy the project into tmp folders that lack its .telemetry file: never prompt or send.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def make_archive(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_archive(indices=range(16), ...)`` -> path of a nested fixture archive."""

    def _make(name: str = "dogs-vs-cats.zip", **kwargs) -> Path:
        return write_archive(tmp_path / "archives" / name, **kwargs)

    return _make
