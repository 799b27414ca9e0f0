"""Custom Keras layers (augmentation) — being written; see issue #3."""

import keras


@keras.saving.register_keras_serializable(package="image_classifiers")
class RandomAugment(keras.layers.Layer):
    """Placeholder until the XLA-friendly augmentation lands: identity."""

    def __init__(self, seed: int | None = None, **kwargs):
        self._options = {k: kwargs.pop(k) for k in list(kwargs) if k not in ("name", "dtype")}
        super().__init__(**kwargs)
        self.seed = seed

    def call(self, inputs, training=None):
        return inputs
