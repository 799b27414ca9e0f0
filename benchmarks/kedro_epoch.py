"""Benchmark: a ``kedro run`` epoch of mini-Xception against the plain Keras port, on CPU.

#13's acceptance: on CPU, an epoch of ``kedro run`` is no slower than the seed's plain Keras
port (``plain_keras_port.py``) measured in the same session. Both get the same images of the
sample (``train_gpu.load_splits``: 2 x ``--limit`` per split) at ``--image-size``. The runs
alternate, ``--rounds`` times each, so that other work on the machine slows both alike::

    python benchmarks/kedro_epoch.py --archive ../shared/datasets/dogs-vs-cats.zip \\
        --image-size 64 --limit 250 --epochs 3 --rounds 3 \\
        --output benchmarks/results/kedro_epoch_vs_plain_cpu_2core_64px.json

``kedro run`` is the real command line in a throw-away copy of the project (its ``conf/``,
the splits saved where ``data_processing`` would write them)::

    kedro run --pipelines=model_training --to-nodes=mini_xception.train_model \\
        --params="training.epochs=3"

and its epoch seconds are read from its ``Epoch n/N - s`` log lines; the port's from its
JSON. Both time an epoch the same way: training steps plus the validation pass. The first
epoch (graph building) is reported apart; the verdict uses the median of the later ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
EPOCH_LINE = re.compile(r"Epoch (\d+)/(\d+) - ([\d.]+) s")

sys.path.insert(0, str(HERE))
from _results import write_results  # noqa: E402 (benchmarks/ on the path first)

logger = logging.getLogger("kedro_epoch")


def make_project(root: Path, args: argparse.Namespace) -> Path:
    """A copy of the project's configuration with the decoded splits in its data folder."""
    from train_gpu import load_splits

    from image_classifiers.datasets import ImageSetDataset

    root.mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package is installed; Kedro only wants the folder
    for split, image_set in load_splits(args).items():
        files = [f"{split}/{i}.jpg" for i in range(len(image_set["labels"]))]  # names only
        ImageSetDataset(str(root / "data" / "05_model_input" / split)).save(
            {**image_set, "files": files}
        )
    return root


def kedro_epochs(project: Path, epochs: int) -> list[float]:
    """Seconds of every epoch of one ``kedro run`` of the training node."""
    # The kedro next to this interpreter: the one of the environment the benchmark runs in.
    command = [
        str(Path(sys.executable).with_name("kedro")),
        "run",
        "--pipelines=model_training",
        "--to-nodes=mini_xception.train_model",
        f"--params=training.epochs={epochs}",
    ]
    # Wide lines: rich would wrap the epoch lines at 80 columns.
    env = {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode:
        raise SystemExit(f"kedro run failed ({done.returncode}):\n{output[-3000:]}")
    seconds = [float(match[2]) for match in EPOCH_LINE.findall(output)]
    if len(seconds) != epochs:
        raise SystemExit(f"Found {len(seconds)} epoch lines, expected {epochs}:\n{output[-3000:]}")
    return seconds


def plain_epochs(args: argparse.Namespace, output: Path) -> list[float]:
    """Seconds of every epoch of one run of ``plain_keras_port.py``."""
    command = [
        sys.executable,
        str(HERE / "plain_keras_port.py"),
        f"--archive={args.archive}",
        f"--image-size={args.image_size}",
        f"--epochs={args.epochs}",
        f"--limit={args.limit}",
        f"--output={output}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"plain_keras_port.py failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return json.loads(output.read_text())["epoch_seconds"]


def summarise(runs: list[list[float]]) -> dict[str, float]:
    later = [s for run in runs for s in run[1:]]
    return {
        "median_first_epoch_s": round(statistics.median(run[0] for run in runs), 2),
        "median_later_epoch_s": round(statistics.median(later), 2),
        "best_later_epoch_s": round(min(later), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=Path("../shared/datasets/dogs-vs-cats.zip"))
    parser.add_argument("--inner-archive", default="train.zip", help="'' if not nested")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=250, help="images per class per split")
    parser.add_argument("--epochs", type=int, default=3, help="per run (at least 2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is reported apart")
    args.archive = args.archive.resolve()
    if not args.archive.is_file():
        parser.error(f"no archive at {args.archive}")

    runs: dict[str, list[list[float]]] = {"kedro_run": [], "plain_keras_port": []}
    with tempfile.TemporaryDirectory(prefix="kedro-epoch-") as tmp:
        project = make_project(Path(tmp) / "project", args)
        for i in range(args.rounds):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for kind in order:
                started = time.perf_counter()
                if kind == "kedro_run":
                    runs[kind].append(kedro_epochs(project, args.epochs))
                else:
                    runs[kind].append(plain_epochs(args, Path(tmp) / f"plain_{i}.json"))
                logger.info(
                    "round %d/%d %s: epochs %s (%.0f s with start-up)",
                    i + 1,
                    args.rounds,
                    kind,
                    runs[kind][-1],
                    time.perf_counter() - started,
                )

    summary = {kind: summarise(values) for kind, values in runs.items()}
    ratio = round(
        summary["kedro_run"]["median_later_epoch_s"]
        / summary["plain_keras_port"]["median_later_epoch_s"],
        3,
    )
    # "No slower", with the run-to-run spread of a shared 2-core machine in mind: 5%.
    verdict = ratio <= 1.05
    logger.info(f"\n{'':<18}{'first epoch':>12}{'later (median)':>16}{'later (best)':>14}")
    for kind, row in summary.items():
        logger.info(
            f"{kind:<18}{row['median_first_epoch_s']:>12.2f}"
            f"{row['median_later_epoch_s']:>16.2f}{row['best_later_epoch_s']:>14.2f}"
        )
    logger.info(f"kedro run / plain port, later epochs: {ratio:.3f} -> no slower: {verdict}")
    if args.output:
        import keras

        from image_classifiers.core.images import available_cpus

        result = {
            "benchmark": "kedro run epoch vs plain Keras port, mini-Xception, CPU",
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": f"{platform.node()} ({available_cpus()} CPU cores)",
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "image_size": args.image_size,
            "images_per_split": 2 * args.limit,
            "summary": summary,
            "ratio_kedro_over_plain_later_epochs": ratio,
            "no_slower_within_5_percent": verdict,
            "runs": runs,
        }
        write_results(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
