"""Fixtures of the transfer_learning tests."""

from __future__ import annotations

import keras
import pytest
from transfer_helpers import tiny_base

from image_classifiers.core.models.transfer import BASES, BaseSpec


@pytest.fixture
def tiny_base_registered(monkeypatch) -> str:
    """Offer the tiny base as ``transfer.base: tiny`` for the duration of a test."""
    spec = BaseSpec(
        tiny_base, keras.applications.mobilenet_v2.preprocess_input, 8, "tiny.h5", "nowhere/"
    )
    monkeypatch.setitem(BASES, "tiny", spec)
    return "tiny"
