"""Sizes and durations the way pachctl prints them ("2.561MiB", "About a minute ago")."""

from __future__ import annotations

import time

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(num_bytes: int | float) -> str:
    """Binary units with four significant digits, like pachctl's tables."""
    value = float(num_bytes)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.4g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """A coarse human duration ("3 seconds", "About a minute", "12 minutes")."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        whole = int(seconds)
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = int(seconds // 86400)
    return f"{days} days"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "-"
    return f"{duration((now or time.time()) - timestamp)} ago"


def precise(seconds: float | None) -> str:
    """Seconds with one decimal (for run summaries where "3 seconds" is too coarse)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"
