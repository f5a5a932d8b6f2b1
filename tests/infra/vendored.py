"""The committed training operator manifests, read the fast way (3.5 MB of YAML, mostly CRD schemas)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import yaml

from infra.operators import PROJECT_ROOT, TRAINING_OPERATOR_MANIFESTS

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _documents(ref: str) -> tuple[str, ...]:
    text = (PROJECT_ROOT / TRAINING_OPERATOR_MANIFESTS[ref]).read_text()
    return tuple(doc for doc in re.split(r"^---\s*$", text, flags=re.M) if doc.strip(" \n#"))


def kinds(ref: str = "v1.9.0") -> list[tuple[str, str]]:
    """(kind, metadata.name) of every object, without parsing the CRD schemas."""
    found = []
    for doc in _documents(ref):
        kind = re.search(r"^kind: (\S+)", doc, flags=re.M)
        name = re.search(r"^metadata:\n(?:  .*\n)*?  name: (\S+)", doc, flags=re.M)
        found.append((kind.group(1) if kind else "", name.group(1) if name else ""))
    return found


def objects(kind: str, ref: str = "v1.9.0") -> list[dict[str, Any]]:
    """The parsed objects of one kind."""
    return [
        yaml.load(doc, Loader=_LOADER)
        for doc in _documents(ref)
        if re.search(rf"^kind: {re.escape(kind)}$", doc, flags=re.M)
    ]
