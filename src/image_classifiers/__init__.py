"""Kedro pipelines that train, compare, track and ship Keras 3 image classifiers."""

__version__ = "0.1.0"
