"""Benchmark: the book's mini-Xception as a plain Keras script, the yardstick for ``kedro run``.

The seed project's plain Keras port of *Deep Learning with Python* (2nd ed., ch. 9): Keras'
own augmentation layers (RandomFlip, RandomRotation, RandomZoom), RMSprop, ``model.fit`` on
arrays in RAM, batch 32, validation every epoch. Only the decoding is the project's (it is
not timed), so both see the same pixels. It prints the seconds of every epoch; compare with
the ``Epoch n/N - s`` lines of ``kedro run --pipelines=model_training`` at the same size::

    python benchmarks/plain_keras_port.py --archive ../shared/datasets/dogs-vs-cats.zip \\
        --image-size 64 --epochs 2
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before Keras imports TensorFlow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results
from train_gpu import load_splits  # the decoder only, not the training code

logger = logging.getLogger("plain_keras_port")


def book_model(size: int):
    """The book's listing: augmentation, rescaling, mini-Xception, one sigmoid unit."""
    import keras
    from keras import layers

    augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.2)]
    )
    inputs = keras.Input(shape=(size, size, 3))
    x = augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(filters=32, kernel_size=5, use_bias=False)(x)
    for width in [32, 64, 128, 256, 512]:
        residual = x
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/datasets/dogs-vs-cats.zip"))
    parser.add_argument("--inner-archive", default="train.zip", help="'' if not nested")
    parser.add_argument("--image-size", type=int, default=180)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="max images per class per split")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)

    import keras

    splits = load_splits(args)
    model = book_model(args.image_size)
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    seconds: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()),
    )
    model.fit(
        splits["train"]["images"],
        splits["train"]["labels"],
        batch_size=32,
        epochs=args.epochs,
        validation_data=(splits["validation"]["images"], splits["validation"]["labels"]),
        callbacks=[timer],
        verbose=0,
    )
    results = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *sys.argv]),
        "image_size": args.image_size,
        "parameters": model.count_params(),
        "epoch_seconds": [round(s, 2) for s in seconds],
    }
    for epoch, value in enumerate(seconds, start=1):
        logger.info("Epoch %d/%d - %.2f s", epoch, args.epochs, value)
    if args.output is not None:
        write_results(args.output, results)


if __name__ == "__main__":
    main()
