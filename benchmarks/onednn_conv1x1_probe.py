"""Probe: does TensorFlow's oneDNN kernel for one convolution op crash at this shape?

TensorFlow 2.21's oneDNN ``jit_1x1:avx2`` backward-weights kernel corrupts the heap for a
1x1 convolution with stride >= 2 on few input channels when the stride leaves the last row
and column unread (docs/tracking.md). Run it in a fresh process per case; a crash shows as
exit status 134 (abort) or 139 (segmentation fault)::

    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/onednn_conv1x1_probe.py filter 3 96 1 2  # crashes
    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/onednn_conv1x1_probe.py filter 8 96 1 2  # ok

Arguments: op (forward | filter | input), channels, size, kernel, stride. It prints "ok".
``ONEDNN_VERBOSE=1`` names the oneDNN kernel that runs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf


def main(op: str, channels: int, size: int, kernel: int, stride: int) -> None:
    batch = 8
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, size, size, channels), dtype=np.float32))
    w = tf.constant(rng.random((kernel, kernel, channels, 32), dtype=np.float32))
    out = (size - kernel) // stride + 1
    dy = tf.ones((batch, out, out, 32))
    strides = [1, stride, stride, 1]
    for _ in range(20):  # the corruption shows within a few calls
        if op == "forward":
            y = tf.nn.conv2d(x, w, stride, "VALID")
        elif op == "filter":
            y = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=w.shape, out_backprop=dy, strides=strides, padding="VALID"
            )
        elif op == "input":
            y = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x.shape, filter=w, out_backprop=dy, strides=strides, padding="VALID"
            )
        else:
            raise SystemExit(f"op must be forward, filter or input, got {op!r}")
        float(tf.reduce_sum(y))
    sys.stdout.write(f"ok {op} {channels} {size} {kernel} {stride}\n")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    main(sys.argv[1], *(int(value) for value in sys.argv[2:]))
