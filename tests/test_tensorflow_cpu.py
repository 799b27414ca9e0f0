"""Regression: training residual_convnet on TensorFlow's CPU kernels used to kill the process."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import image_classifiers  # must come first: it chooses TensorFlow's CPU kernels
    from image_classifiers.models import build_classifier

    model = build_classifier("residual_convnet", (96, 96, 3), 2)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    y = rng.integers(0, 2, (8,))
    model.fit(x, y, epochs=1, verbose=0)
    print("trained")
    """
)


@pytest.mark.slow
def test_residual_convnet_trains_on_tensorflow_cpu():
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["KERAS_BACKEND"] = "tensorflow"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained" in result.stdout
