"""Input limits of the model server: one place for defaults, env vars and overrides.

Limits exist so that a hostile or careless client gets a clear 413 instead of exhausting memory or
holding the model for minutes. Precedence: explicit argument > environment variable > default.
"""

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

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            if field.name == "adaptive_batch_time":
                if value < 0:
                    raise ValueError(f"adaptive_batch_time must be >= 0 seconds, got {value}")
            elif value < 1 or value != int(value):
                raise ValueError(f"{field.name} must be a whole number >= 1, got {value}")

    @staticmethod
    def env_name(field_name: str) -> str:
        """`max_request_bytes` -> `ISSUE_TITLES_MAX_REQUEST_BYTES`."""
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "ServingLimits":
        """Defaults, replaced by `ISSUE_TITLES_*` variables, replaced by non-None `overrides`."""
        env = os.environ if env is None else env
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(f"unknown serving limit(s): {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name in known:
            raw = env.get(cls.env_name(name))
            if raw is not None and raw.strip() != "":
                values[name] = _parse_number(cls.env_name(name), raw, float_ok=name == "adaptive_batch_time")
        values.update({name: value for name, value in overrides.items() if value is not None})
        return replace(cls(), **values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_number(variable: str, raw: str, *, float_ok: bool) -> int | float:
    try:
        return float(raw) if float_ok else int(raw.replace("_", ""))
    except ValueError:
        kind = "a number" if float_ok else "a whole number"
        raise ValueError(f"{variable} must be {kind}, got {raw!r}") from None
