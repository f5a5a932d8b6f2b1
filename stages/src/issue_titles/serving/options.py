"""The observability options both server entry points take (`stages serve`, `python -m issue_titles.serving`).

No MLServer import here: `stages --help` builds its parser without the `serve` extra installed."""

import argparse
from collections.abc import Callable

from issue_titles.contract import METRICS_PORT


def add_observability_options(parser: argparse.ArgumentParser, port: Callable[[str], int]) -> None:
    """--metrics-port, --tracing-server, --log-format and --no-access-log, with their environment fallbacks."""
    parser.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help=f"MLServer's Prometheus /metrics on this port (the serving image: {METRICS_PORT}; "
        "default: MLSERVER_METRICS_PORT, else off)",
    )
    parser.add_argument(
        "--tracing-server",
        default=None,
        help="OTLP/gRPC collector host:port for traces (default: MLSERVER_TRACING_SERVER, else off)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines as text or JSON (default: ISSUE_TITLES_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no log line per request (default: one line per request)",
    )
