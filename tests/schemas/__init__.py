"""The upstream schemas the tests validate against, vendored byte-identical (see README.md: repo, tag, path, licence).

The two CRDs are stored gzipped (`*.gz`); `text()` reads a schema by its upstream file name either way.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import yaml

SCHEMAS = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The vendored file for `name` (the plain file, or `name.gz`)."""
    plain = SCHEMAS / name
    return plain if plain.is_file() else SCHEMAS / f"{name}.gz"


def raw(name: str) -> bytes:
    """The upstream file's bytes (decompressed when stored as .gz)."""
    file = path(name)
    return gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()


def text(name: str) -> str:
    return raw(name).decode("utf-8")


def load_json(name: str) -> Any:
    return json.loads(text(name))


def load_yaml(name: str) -> Any:
    """Parsed with libyaml where PyYAML has it (the same safe constructors, ~10x faster on the CRDs' megabytes)."""
    return yaml.load(text(name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
