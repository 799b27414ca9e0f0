"""A model whose auxiliary classifier heads count in training only (GoogLeNet's trick)."""

from typing import Any, Self

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="image_classifiers")
class AuxiliaryHeadsModel(keras.Model):
    """Wraps a network with outputs ``[main, aux_1, ..., aux_k]``: the main one alone at
    inference, ``loss(main) + aux_weight * sum(loss(aux_i))`` in training (metrics: main)."""

    def __init__(self, network: keras.Model, aux_weight: float = 0.3, **kwargs: Any):
        super().__init__(**kwargs)
        if len(network.outputs) < 2:
            raise ValueError(
                "AuxiliaryHeadsModel needs a network with a main and at least one auxiliary "
                f"output; '{network.name}' has {len(network.outputs)}."
            )
        self.network = network
        self.aux_weight = float(aux_weight)
        self.built = network.built

    # Describe the inference model (main head only), like a functional classifier.
    inputs = property(lambda self: self.network.inputs)
    outputs = property(lambda self: self.network.outputs[:1])
    input_shape = property(lambda self: self.network.input_shape)
    output_shape = property(lambda self: self.network.output_shape[0])

    def call(self, inputs, training=None):
        outputs = self.network(inputs, training=training)
        return tuple(outputs) if training else outputs[0]

    def compute_output_shape(self, input_shape):
        return self.network.compute_output_shape(input_shape)[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (tuple, list)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        main, *auxiliary = y_pred
        # The compiled loss (with regularisation) for the main head, the bare one for the rest.
        loss = super().compute_loss(x, y, main, sample_weight, training=training)
        head_loss = keras.losses.get(self.loss)
        for prediction in auxiliary:
            if isinstance(head_loss, keras.losses.Loss):
                value = head_loss(y, prediction, sample_weight)
            else:  # a loss function: align a sigmoid head's (N, 1) with labels (N,)
                labels = ops.reshape(y, (-1, 1)) if prediction.shape[-1] == 1 else y
                value = ops.mean(head_loss(labels, prediction))
            loss = loss + self.aux_weight * value
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self) -> dict[str, Any]:
        network = keras.saving.serialize_keras_object(self.network)
        return {**super().get_config(), "network": network, "aux_weight": self.aux_weight}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network=network, **config)
