"""Input limits of the model server: one place for defaults, env vars and overrides.

Limits exist so that a hostile or careless client gets a clear 413 instead of exhausting memory or
holding the model for minutes. Precedence: explicit argument > environment variable > default.
"""

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

ENV_PREFIX = "ISSUE_TITLES_"


@dataclass(frozen=True)
class ServingLimits:
    """What one request may contain, and how MLServer's adaptive batcher groups requests."""

    max_request_bytes: int = 4 * 1024 * 1024
    """Whole HTTP request body (after gzip decompression), in bytes. Over it: 413."""
    max_batch_bodies: int = 512
    """Issue bodies in one request. Over it: 413."""
    max_body_chars: int = 100_000
    """Characters in one issue body. Over it: 413. The tokenizer keeps only the first tokens anyway."""
    adaptive_batch_size: int = 16
    """MLServer `max_batch_size`: how many concurrent requests are merged into one model call."""
    adaptive_batch_time: float = 0.001
    """MLServer `max_batch_time`, seconds: how long a request waits for others to join its batch.

    Short, because a lone request pays all of it; batches that queue behind a busy model are merged anyway
    (`runtime.MergingModelThread`), so a longer window buys no throughput (1, 2, 3 ms measured side by side: the
    same concurrency-32 throughput within noise; with 10 ms a lone request took 21 ms at p50 instead of 9 ms)."""
    body_timeout: float = 30.0
    """Seconds a request body may take to arrive, from its headers to its last byte. Over it: 408, connection
    closed (a Content-Length larger than what is sent, or a missing last chunk, would hold a connection forever)."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a whole request line and header block, counted from when it opens or
    its previous response ended. Over it: the connection is closed (with a JSON 408 if part of a request came)."""
    idle_timeout: float = 5.0
    """Seconds a keep-alive connection may stay silent after a response before it is closed (uvicorn's
    `timeout_keep_alive`)."""
    max_connections: int = 512
    """Open HTTP connections at once. A connection over it first closes the oldest one still waiting for its
    request headers; when every connection has a request in flight, it gets a JSON 503 and is closed at once.
    The server's open-file limit must leave room for it (checked at start)."""

    def __post_init__(self) -> None:
        for field in fields(self):
            check_limit(field.name, getattr(self, field.name), field.name)

    @staticmethod
    def env_name(field_name: str) -> str:
        """`max_request_bytes` -> `ISSUE_TITLES_MAX_REQUEST_BYTES`."""
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "ServingLimits":
        """Defaults, replaced by `ISSUE_TITLES_*` variables, replaced by non-None `overrides`.

        A bad variable is named in the error (`ISSUE_TITLES_ADAPTIVE_BATCH_TIME must be ...`), so the server
        refuses to start with one line instead of starting with a limit that wedges it."""
        env = os.environ if env is None else env
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(f"unknown serving limit(s): {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name in known:
            variable = cls.env_name(name)
            raw = env.get(variable)
            if raw is not None and raw.strip() != "" and overrides.get(name) is None:
                values[name] = check_limit(name, _parse_number(variable, raw, float_ok=name in SECONDS), variable)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return replace(cls(), **values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Sane ranges: outside them a limit is a typo or a unit mistake (`inf`, `1e9` seconds, a batch of a billion), and
# some would wedge the server (an infinite batch window makes every request wait forever).
WHOLE_NUMBER_RANGES = {
    "max_request_bytes": (1, 1024**3),
    "max_batch_bodies": (1, 100_000),
    "max_body_chars": (1, 100_000_000),
    "adaptive_batch_size": (1, 4096),
    "max_connections": (1, 100_000),
}
SECONDS = {
    "adaptive_batch_time": (0.0, 1.0),
    "body_timeout": (0.1, 3600.0),
    "header_timeout": (0.1, 3600.0),
    "idle_timeout": (0.1, 3600.0),
}


def check_limit(name: str, value: Any, label: str) -> int | float:
    """`value` if it is a sane `name`, else ValueError naming `label` (the field or its variable)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{label} must be a number, got {value!r}")
    if name in SECONDS:
        low, high = SECONDS[name]
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{label} must be a finite number of seconds from {low:g} to {high:g}, got {value}")
        return value
    low, high = WHOLE_NUMBER_RANGES[name]
    if not math.isfinite(value) or value != int(value) or value < low:
        raise ValueError(f"{label} must be a whole number >= {low}, got {value}")
    if value > high:
        raise ValueError(f"{label} must be at most {high}, got {value}")
    return int(value)


def _parse_number(variable: str, raw: str, *, float_ok: bool) -> int | float:
    try:
        return float(raw) if float_ok else int(raw.replace("_", ""))
    except ValueError:
        kind = "a number" if float_ok else "a whole number"
        raise ValueError(f"{variable} must be {kind}, got {raw!r}") from None
