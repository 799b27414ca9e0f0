"""Re-pack the nested dogs-vs-cats archive as class folders: ``PetImages/Cat``, ``PetImages/Dog``.

The layout of Microsoft's "Kaggle Cats and Dogs" download, with the very same JPEG bytes
(``train/cat.12.jpg`` -> ``PetImages/Cat/12.jpg``), so the two sources can be compared on
the same images::

    python benchmarks/repack_class_folders.py ../shared/datasets/dogs-vs-cats.zip /tmp/PetImages.zip

Each member keeps its compression method; the output is written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import zipfile
from pathlib import Path

_NAME = re.compile(r"^(?:.*/)?(?P<label>[^/]+)\.(?P<index>\d+)\.(?P<ext>[^./]+)$")


def repack(archive: Path, output: Path, inner: str = "train.zip") -> int:
    """Write ``output`` with ``PetImages/<Label>/<N>.<ext>`` for every ``<label>.<N>.<ext>``.

    Returns:
        The number of images written.
    """
    with zipfile.ZipFile(archive) as outer:
        data = outer.read(inner) if inner in outer.NameToInfo else None
    source = zipfile.ZipFile(io.BytesIO(data)) if data is not None else zipfile.ZipFile(archive)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    count = 0
    with source, zipfile.ZipFile(partial, "w") as target:
        for info in source.infolist():
            match = _NAME.match(info.filename)
            if match is None:
                continue
            name = f"PetImages/{match['label'].capitalize()}/{match['index']}.{match['ext']}"
            target.writestr(name, source.read(info), compress_type=info.compress_type)
            count += 1
    os.replace(partial, output)
    return count


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and re-pack."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="the nested dogs-vs-cats archive")
    parser.add_argument("output", type=Path, help="the class-folder zip to write")
    args = parser.parse_args(argv)
    count = repack(args.archive, args.output)
    sys.stdout.write(f"{args.output}: {count} images in PetImages/<Class>/\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
