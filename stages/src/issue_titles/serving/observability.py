"""What an operator sees of a running server: one access-log line per request, JSON logs on request, and the
bundle's identity (job ID, commits, metrics) for the model version label and the metadata routes.

The access log is an ASGI middleware around MLServer's whole app (outside the request guard, so refusals are
logged too). It writes method, path, status, latency and the number of bodies the request carried, never the
body text nor the query string (the Seldon form API can carry a body in `?json=`). MLServer 1.7 ties its only
access log (uvicorn's) to `debug`, which the guard keeps off because it also turns on traceback pages.
"""

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from issue_titles.contract import PROVENANCE, WEIGHTS_FILE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCESS_LOGGER = "issue_titles.access"
access_logger = logging.getLogger(ACCESS_LOGGER)

# Probes come every few seconds; logging them would bury the requests (MLServer drops them from its log too).
QUIET_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/health/status", "/health/ping"})

# The request being answered: a small mutable record the runtime fills in (the number of bodies). A ContextVar
# holding a dict, so the value set here reaches the handler and what the handler writes reaches the log.
_current: ContextVar[dict[str, Any] | None] = ContextVar("issue_titles_access_record", default=None)


def note_bodies(count: int) -> None:
    """Called by the runtime once it knows how many bodies a request holds (a cheap no-op outside a request)."""
    record = _current.get()
    if record is not None:
        record["bodies"] = count


class AccessLog:
    """ASGI middleware: one INFO line on `issue_titles.access` per HTTP request, after its response is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in QUIET_PATHS or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {"status": 0, "bodies": 0}
        token = _current.set(record)
        started = time.perf_counter()

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            _current.reset(token)
            latency_ms = (time.perf_counter() - started) * 1000.0
            access_logger.info(
                "%s %s %d %.1fms bodies=%d",
                scope.get("method", "?"),
                scope.get("path", "?"),
                record["status"] or 500,  # nothing sent: the request failed before answering
                latency_ms,
                record["bodies"],
                extra={
                    "http": {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": record["status"] or 500,
                        "latency_ms": round(latency_ms, 3),
                        "bodies": record["bodies"],
                    }
                },
            )


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the access fields (`http`) when present.

    MLServer's own `use_structured_logging` formatter pastes the message into a JSON template without escaping,
    so a message with a quote breaks the line; this one encodes every field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        http = getattr(record, "http", None)
        if http is not None:
            entry["http"] = http
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


JSONFormatter.converter = time.gmtime

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s [%(name)s] %(levelname)s %(message)s"
# Our loggers, MLServer's and uvicorn's: what a serving process writes.
SERVER_LOGGERS = ("issue_titles", "mlserver", "uvicorn", "uvicorn.error")


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_log_format(requested: str | None, env: Mapping[str, str] | None = None) -> str:
    """`--log-format`, else `ISSUE_TITLES_LOG_FORMAT`, else json when `MLSERVER_USE_STRUCTURED_LOGGING` is true."""
    env = os.environ if env is None else env
    value = (
        requested
        or env.get("ISSUE_TITLES_LOG_FORMAT")
        or ("json" if truthy(env.get("MLSERVER_USE_STRUCTURED_LOGGING")) else "text")
    )
    if value not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return value


def apply_log_format(log_format: str) -> None:
    """Give every handler of the server's loggers our formatter (JSON), or ours a plain one (text)."""
    formatter: logging.Formatter = JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if log_format == "json" or name == "issue_titles":
                handler.setFormatter(formatter)


def read_provenance(model_dir: Path) -> dict[str, Any]:
    """The bundle's provenance.json as a dict ({} when absent or unreadable: the loader refuses such bundles)."""
    try:
        record = json.loads((Path(model_dir) / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def model_version(provenance: dict[str, Any]) -> str | None:
    """The version the server reports and labels metrics with: the Pachyderm job that built the bundle.

    A bundle built outside Pachyderm has no job ID; it gets `local-<first 12 hex of the weights' sha256>`, so two
    different local bundles never share a version. None only without provenance."""
    job_id = provenance.get("job_id")
    if isinstance(job_id, str) and job_id:
        return job_id
    weights = (provenance.get("files") or {}).get(WEIGHTS_FILE) if isinstance(provenance.get("files"), dict) else None
    if isinstance(weights, str) and weights:
        return f"local-{weights[:12]}"
    return None
