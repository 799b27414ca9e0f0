"""Kedro pipelines that train, compare, track and ship Keras 3 image classifiers."""

import os

# TensorFlow 2.21's oneDNN CPU kernels corrupt the heap when training residual_convnet
# (process aborts with "malloc(): corrupted ..."); the plain Eigen kernels are correct. It
# only takes effect if set before TensorFlow is imported, hence here. Export
# TF_ENABLE_ONEDNN_OPTS=1 to opt back in.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
