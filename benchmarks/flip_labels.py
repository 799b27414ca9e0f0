"""Flip some training labels of a Keras-format ``.npz`` (``x_train, y_train, x_test, y_test``),
to measure how many the label check finds (``benchmarks/data_checks.py mnist``)::

    python benchmarks/flip_labels.py ../shared/datasets/mnist-sample.npz /tmp/mnist-flipped.npz

Each chosen row (``--count``, seeded) gets another class, drawn at random; the rows and their
labels before and after go to ``<output>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    arrays = dict(np.load(args.source))
    labels = arrays["y_train"].copy()
    classes = int(labels.max()) + 1
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(labels), args.count, replace=False))
    new = (labels[rows] + rng.integers(1, classes, args.count)) % classes  # never the same
    flips = [
        {"row": int(r), "was": int(labels[r]), "now": int(n)}
        for r, n in zip(rows, new, strict=True)
    ]
    labels[rows] = new
    np.savez_compressed(args.output, **{**arrays, "y_train": labels})
    args.output.with_suffix(".json").write_text(json.dumps(flips, indent=1))
    sys.stdout.write(f"Flipped {args.count} of {len(labels)} training labels -> {args.output}\n")


if __name__ == "__main__":
    main()
