"""A model whose auxiliary classifier heads count in training only (GoogLeNet's trick)."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="image_classifiers")
class AuxiliaryHeadsModel(keras.Model):
    """Wraps a network with outputs ``[main, aux_1, ..., aux_k]``.

    For inference (``training`` falsy) the model returns the main prediction alone, so it
    predicts, evaluates, saves and serves like any single-output classifier. When training
    (``model(x, training=True)``, as ``fit`` does) it returns a tuple of every head, and the
    loss becomes ``loss(main) + aux_weight * sum(loss(aux_i))``: the extra gradient reaching the
    middle of a deep network is what the auxiliary heads are for. Metrics use the main head.
    Under ``jit_compile`` the unused auxiliary heads are pruned from the inference graph.

    Args:
        network: Model with at least two outputs, the main prediction first.
        aux_weight: Weight of each auxiliary head's loss (0.3 in the GoogLeNet paper).
    """

    def __init__(self, network: keras.Model, aux_weight: float = 0.3, **kwargs: Any):
        super().__init__(**kwargs)
        if len(network.outputs) < 2:
            raise ValueError(
                "AuxiliaryHeadsModel needs a network with a main and at least one auxiliary "
                f"output; '{network.name}' has {len(network.outputs)}."
            )
        self.network = network
        self.aux_weight = float(aux_weight)
        # The wrapped network is built already, and so is this thin wrapper around it.
        self.built = network.built

    # What a functional model offers, describing the inference model (the main head only), so
    # code that reads `model.input_shape` or `model.outputs` treats this like any classifier.
    @property
    def inputs(self) -> list:
        return self.network.inputs

    @property
    def outputs(self) -> list:
        return self.network.outputs[:1]

    @property
    def input_shape(self) -> tuple:
        return self.network.input_shape

    @property
    def output_shape(self) -> tuple:
        return self.network.output_shape[0]

    def call(self, inputs, training=None):
        outputs = self.network(inputs, training=training)
        return tuple(outputs) if training else outputs[0]

    def compute_output_shape(self, input_shape):
        return self.network.compute_output_shape(input_shape)[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (tuple, list)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        main, *auxiliary = y_pred
        loss = super().compute_loss(x, y, main, sample_weight, training=training)
        # `_compile_loss` is the loss given to `compile()`, which `Trainer.compute_loss` uses
        # too; calling it directly keeps regularization losses from being counted per head.
        if self._compile_loss is not None:
            for prediction in auxiliary:
                loss = loss + self.aux_weight * self._compile_loss(y, prediction, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "aux_weight": self.aux_weight,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AuxiliaryHeadsModel:
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network=network, **config)
