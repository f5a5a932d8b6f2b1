"""The labels every object the program makes carries, so a user (and the e2e check) can find them all."""

from __future__ import annotations

PART_OF = "issue-titles"


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/component": component,
    }
