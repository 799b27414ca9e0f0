"""Writing a benchmark's figures: indented JSON, atomically.

Shared by the benchmark scripts, which run as plain scripts (their folder is on
``sys.path``) and, on the device machine, without the project's Kedro dependencies: hence
``os.replace`` here rather than the project's ``AtomicJSONDataset``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` as JSON; a run killed meanwhile leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("Wrote %s", path)
