"""Regression: training residual_convnet on TensorFlow's CPU kernels used to kill the process.

TensorFlow 2.21's oneDNN kernel for the weight gradient of a strided 1x1 convolution
(``jit_1x1:avx2``, backward_weights) corrupts the heap when the input has few channels and the
stride leaves its last row and column unread: the book's residual_convnet shortcut on the RGB
image at an even size. The models avoid that kernel (see residual_convnet.py), so oneDNN stays on.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from image_classifiers.core.models import ARCHITECTURES, build_backbone

SCRIPT = textwrap.dedent(
    """
    import os
    import numpy as np
    import image_classifiers
    from image_classifiers.core.models import build_classifier

    # The package leaves TensorFlow's default, oneDNN on, so this trains with its kernels.
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
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


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_no_architecture_has_a_strided_1x1_convolution_on_few_channels(architecture):
    # The crashing kernel: measured with 1, 3, 4 and 5 input channels, not with 7 or more.
    model = build_backbone(architecture, (96, 96, 3), 2)
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1):
            channels = layer.input.shape[-1]
            assert max(layer.strides) == 1 or channels >= 8, (layer.name, channels)


def test_residual_convnet_shortcut_is_the_books_strided_convolution():
    model = build_backbone("residual_convnet", (33, 33, 3), 2, filters=(4, 8))
    shortcut = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.MaxPooling2D) and layer.pool_size == (1, 1)
    )
    conv = next(layer for layer in model.layers if layer.input is shortcut.output)
    books = keras.layers.Conv2D(4, 1, strides=2)  # the book's layer, same weights
    books.build((None, 33, 33, 3))
    books.set_weights(conv.get_weights())
    x = np.random.default_rng(0).random((2, 33, 33, 3), dtype=np.float32)
    np.testing.assert_allclose(conv(shortcut(x)), books(x), rtol=1e-5, atol=1e-6)
