"""Start MLServer in-process for one serving bundle: `serve(model_dir, host, port, **limits)`.

MLServer's own `mlserver start <folder>` would also work with the files `write_settings` puts in a bundle,
but only this path adds the HTTP guard (size limits, JSON 4xx for every bad request, no model-repository
API) and turns gRPC off unless asked for, so the serving image runs `stages serve`, which calls this.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from mlserver import MLServer
from mlserver.settings import ModelSettings, Settings

from issue_titles.contract import MODEL_NAME, MODEL_SETTINGS_FILE, SERVING_PORT
from issue_titles.errors import StageError

from . import http_guard, observability
from .limits import ServingLimits, check_limit
from .settings import build_settings

logger = logging.getLogger(__name__)


class ModelLoadFailed(StageError):
    """The server stopped because the model could not be loaded (MLServer logged the cause)."""


class _GRPCOff:
    """Stands in for MLServer's gRPC server when gRPC is not wanted: nothing listens, nothing to stop."""

    async def start(self) -> None:
        return None

    async def stop(self, sig: int | None = None) -> None:
        return None


# On SIGTERM/SIGINT: in-flight requests get this long to finish (uvicorn's graceful shutdown), then are cancelled.
GRACEFUL_SHUTDOWN_S = 3
# ...and whatever still runs after this long (a model call that never returns, a model still loading: neither can
# be cancelled from Python) is cut short by leaving the process. Kubernetes waits 30 s before SIGKILL.
HARD_EXIT_S = 6.0


class IssueTitleServer(MLServer):
    """MLServer with the HTTP guard installed on its FastAPI app before the app starts serving, JSON 400s from
    uvicorn itself, and a stop on SIGTERM/SIGINT that never waits more than `HARD_EXIT_S`."""

    def __init__(
        self,
        settings: Settings,
        limits: ServingLimits,
        *,
        grpc_enabled: bool,
        access_log: bool = True,
        log_format: str = "text",
    ) -> None:
        self._limits = limits
        self._grpc_enabled = grpc_enabled
        self._access_log = access_log
        self._log_format = log_format
        self._stopping = False
        self._draining = http_guard.Draining()
        super().__init__(settings)
        observability.apply_log_format(log_format)  # after MLServer's own logger set-up, which it replaces
        self._data_plane.infer = _infer_labelled_with_model_version(self._data_plane, self._model_registry)
        self._data_plane._inference_middleware = _SafeHeaderIds(self._data_plane._inference_middleware)

    def _create_servers(self) -> None:
        super()._create_servers()
        rest_server = getattr(self, "_rest_server", None)
        app = getattr(rest_server, "_app", None)
        if rest_server is None or app is None or not callable(getattr(rest_server, "_get_config", None)):
            # MLServer 1.7 keeps the FastAPI app at `_rest_server._app` and builds uvicorn's config in `_get_config`
            raise RuntimeError("this MLServer version does not expose its REST app; pin mlserver 1.7.x")
        http_guard.install(app, self._limits.max_request_bytes, self._limits.body_timeout, self._draining)
        if self._access_log:
            app.add_middleware(observability.AccessLog)  # added last: outermost, so it also times the guard
        mlserver_config = rest_server._get_config
        log_format = self._log_format
        limits = self._limits

        def uvicorn_config() -> Any:
            config = mlserver_config()  # uvicorn's Config (re)configures uvicorn's loggers here
            config.http = http_guard.guarded_protocol(limits.header_timeout, limits.max_connections)
            config.timeout_keep_alive = limits.idle_timeout
            config.timeout_graceful_shutdown = GRACEFUL_SHUTDOWN_S
            observability.apply_log_format(log_format)
            return config

        rest_server._get_config = uvicorn_config
        if not self._grpc_enabled:
            self._grpc_server = _GRPCOff()

    def _add_signal_handlers(self) -> None:
        """MLServer's handlers only ask its servers to stop, which waits for every request and for a model that is
        still loading (mlserver 1.7, server.py): a request stuck in the model kept the process alive forever."""
        loop = asyncio.get_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def _on_stop_signal(self, sig: int) -> None:
        # Only the first signal counts: uvicorn (0.54, server.py `capture_signals`) also catches it and raises it
        # again once it has stopped, so a "second" signal is not necessarily the user's.
        if self._stopping:
            return
        self._stopping = True
        self._draining.active = True  # new requests: JSON 503 from now on
        asyncio.get_event_loop().set_exception_handler(_quiet_cancellations)
        logger.info("%s: stopping (at most %g s)", signal.Signals(sig).name, HARD_EXIT_S)
        watchdog = threading.Timer(HARD_EXIT_S, _exit_after_timeout)
        watchdog.daemon = True
        watchdog.start()
        self._stop_task = asyncio.get_event_loop().create_task(self.stop(sig=sig))

    async def add_custom_handlers(self, model: Any) -> Any:
        """Before the routes go live, give the runtime the data plane, so its Seldon routes run through MLServer's
        own inference path (counted in `model_infer_request_*`, traced) exactly as V2 requests are."""
        if hasattr(model, "attach_data_plane"):
            model.attach_data_plane(self._data_plane)
        return await super().add_custom_handlers(model)

    async def model_loaded(self, name: str) -> bool:
        try:
            models = await self._model_registry.get_models(name)
        except Exception:
            return False
        return any(model.ready for model in models)


def _infer_labelled_with_model_version(data_plane: Any, registry: Any) -> Any:
    """`DataPlane.infer` labelling its metrics with the served model's version when the URL names none.

    MLServer 1.7 (handlers/dataplane.py, `_infer_contextmanager`) labels `model_infer_request_*` with the
    version from the URL, so `/v2/models/<name>/infer` counted under version "None"; here the version is the
    model's own (the bundle's job ID)."""
    infer = data_plane.infer

    async def infer_with_version(payload: Any, name: str, version: str | None = None) -> Any:
        if version is None:
            try:
                version = (await registry.get_model(name)).version
            except Exception:  # unknown model: MLServer's own path answers it (404)
                pass
        return await infer(payload, name, version)

    return infer_with_version


class _SafeHeaderIds:
    """MLServer's CloudEvents middleware (mlserver 1.7, cloudevents.py) copies the V2 request `id` into the
    `Ce-Id` / `Ce-Requestid` response headers: an id with CR/LF or NUL closed the connection without an answer, one
    outside Latin-1 gave a 500. The id is any string (Open Inference Protocol) and the JSON body echoes it exactly;
    the headers get it percent-encoded (RFC 3986), so no unchecked text ever reaches a header."""

    HEADERS = ("Ce-Id", "Ce-Requestid")

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def request_middleware(self, request: Any, model_settings: Any) -> Any:
        return _header_safe(self._inner.request_middleware(request, model_settings))

    def response_middleware(self, response: Any, model_settings: Any) -> Any:
        return _header_safe(self._inner.response_middleware(response, model_settings))


def _header_safe(payload: Any) -> Any:
    headers = getattr(getattr(payload, "parameters", None), "headers", None)
    if headers:
        for name in _SafeHeaderIds.HEADERS:
            if isinstance(headers.get(name), str):
                headers[name] = urllib.parse.quote(headers[name], safe="-._~:/@!$&'()*+,;=")
    return payload


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """While stopping: MLServer's batcher (1.7, batching/adaptive.py `_predict_callback`) lets the cancellation of
    its model-call tasks escape as "Exception in callback" tracebacks, one per batch; their requests were already
    answered (JSON 503 from the guard). Anything else is still logged as asyncio does."""
    if isinstance(context.get("exception"), asyncio.CancelledError | asyncio.InvalidStateError):
        return
    loop.default_exception_handler(context)


def _exit_after_timeout() -> None:
    """Leave without waiting for threads that cannot be interrupted (the model thread, a model still loading)."""
    logger.error("the server did not stop within %g s (a request or the model load still runs): exiting", HARD_EXIT_S)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


async def _run(
    settings: Settings,
    model_settings: ModelSettings,
    limits: ServingLimits,
    grpc_enabled: bool,
    access_log: bool = True,
    log_format: str = "text",
) -> None:
    server = IssueTitleServer(settings, limits, grpc_enabled=grpc_enabled, access_log=access_log, log_format=log_format)
    await server.start([model_settings])
    if not server._stopping and not await server.model_loaded(model_settings.name):
        raise ModelLoadFailed(f"model {model_settings.name!r} could not be loaded; see the log above")


# The adaptive-batching fields of the bundle's model-settings.json (written by `stages build`) and the limits they set.
BUNDLE_BATCHING = {"max_batch_size": "adaptive_batch_size", "max_batch_time": "adaptive_batch_time"}


def bundle_batching(model_dir: Path | str) -> dict[str, Any]:
    """The adaptive batching the bundle's model-settings.json asks for, where no `ISSUE_TITLES_*` variable is set.

    Precedence, highest first: an argument, the variable, the bundle's model-settings.json, the default; so a
    bundle built with other batching is served as it was built (MLServer reads the same two fields from a
    model-settings.json). A value out of range is refused naming the file, as a bad variable is."""
    path = Path(model_dir) / MODEL_SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        import json

        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: not readable JSON ({error})") from None
    found: dict[str, Any] = {}
    for field, limit in BUNDLE_BATCHING.items():
        if not isinstance(document, dict) or field not in document:
            continue
        variable = ServingLimits.env_name(limit)
        if os.environ.get(variable, "").strip():
            continue  # the variable wins over the bundle
        found[limit] = check_limit(limit, document[field], f"{path} {field}")
    return found


def serve(
    model_dir: Path | str,
    host: str = "127.0.0.1",
    port: int = SERVING_PORT,
    *,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    predictor_loader: str | None = None,
    tracing_server: str | None = None,
    access_log: bool = True,
    log_format: str | None = None,
    **limits: Any,
) -> None:
    """Serve the bundle at `model_dir` until SIGINT/SIGTERM.

    Raises `StageError` (one line for the CLI) for a missing folder, a bad limit or a busy port, and its
    subclass `ModelLoadFailed` when the model cannot be loaded.

    `grpc_port`: None keeps gRPC off. `metrics_port`: MLServer's Prometheus server on this port; None takes
    `MLSERVER_METRICS_PORT` when set, else keeps it off. `tracing_server` ("host:port" of an OTLP/gRPC collector):
    None takes `MLSERVER_TRACING_SERVER`, else no tracing. `access_log`: one line per request on
    `issue_titles.access`. `log_format`: "text" or "json" (None: `ISSUE_TITLES_LOG_FORMAT`, else json when
    `MLSERVER_USE_STRUCTURED_LOGGING` is true, else text). `limits`: any
    `ServingLimits` field (e.g. `max_request_bytes=1_000_000`); unset ones come from `ISSUE_TITLES_*`
    variables or the defaults. `predictor_loader` ("module:callable") replaces `TitlePredictor.load`.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise StageError("model bundle folder not found", path=model_dir)
    check_host(host)
    for label, wanted in (("HTTP", port), ("gRPC", grpc_port), ("metrics", metrics_port)):
        if wanted is not None:
            check_port(wanted, label)
    try:
        limits = bundle_batching(model_dir) | {name: value for name, value in limits.items() if value is not None}
        resolved = ServingLimits.from_env(**limits)
    except (TypeError, ValueError) as error:
        raise StageError(f"bad serving limit: {error}") from None
    try:
        log_format = observability.resolve_log_format(log_format)
        metrics_port = metrics_port if metrics_port is not None else _env_port("MLSERVER_METRICS_PORT")
    except ValueError as error:
        raise StageError(str(error)) from None
    tracing_server = tracing_server or os.environ.get("MLSERVER_TRACING_SERVER") or None
    _make_room_for_connections(resolved.max_connections)
    for label, wanted in (("HTTP", port), ("gRPC", grpc_port), ("metrics", metrics_port)):
        if wanted is not None:
            _check_port_free(host, wanted, label)
    settings, model_settings = build_settings(
        model_dir,
        host,
        port,
        resolved,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        predictor_loader=predictor_loader,
        tracing_server=tracing_server,
    )
    _configure_logging()
    observability.apply_log_format(log_format)
    base = f"http://{host}:{port}"
    logger.info(
        "serving model %r from %s on %s: V2 POST %s/v2/models/%s/infer, Seldon POST %s/api/v1.0/predictions "
        "(also /api/v0.1/predictions, /predict), ready GET %s/v2/health/ready; gRPC %s; metrics %s; tracing %s; "
        "version %s; limits %s",
        MODEL_NAME,
        model_dir.resolve(),
        base,
        base,
        MODEL_NAME,
        base,
        base,
        f"on {host}:{grpc_port}" if grpc_port is not None else "off",
        f"on {host}:{metrics_port}{settings.metrics_endpoint}" if metrics_port is not None else "off",
        f"to {tracing_server} (OTLP/gRPC)" if tracing_server else "off",
        model_settings.version,
        resolved.as_dict(),
    )
    asyncio.run(_run(settings, model_settings, resolved, grpc_port is not None, access_log, log_format))


def _env_port(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name} must be a port number, got {value!r}")
    return int(value)


def check_host(host: str) -> None:
    """An empty host would silently listen on every interface: say `0.0.0.0` when that is meant."""
    if not isinstance(host, str) or not host.strip():
        raise StageError("--host is empty; give an address such as 127.0.0.1, or 0.0.0.0 for every interface")


def check_port(port: Any, label: str = "HTTP") -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise StageError(f"the {label} port must be a whole number from 1 to 65535, got {port!r}")


# Open files the process needs besides its connections: the model's files, logs, TensorFlow's own, the listeners.
FILES_BESIDES_CONNECTIONS = 128


def _make_room_for_connections(max_connections: int) -> None:
    """Raise the soft open-file limit (up to the hard one) so `max_connections` fit; refuse to start otherwise.

    Past the limit, accept() fails with EMFILE and asyncio stops accepting for a second at a time: every client,
    health checks included, would time out instead of getting the 503 the connection cap gives."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to check
        return
    needed = max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise StageError(
        f"ISSUE_TITLES_MAX_CONNECTIONS={max_connections} needs {needed} open files, but the limit is {hard} "
        f"(ulimit -n); lower ISSUE_TITLES_MAX_CONNECTIONS to at most {max(1, hard - FILES_BESIDES_CONNECTIONS)}"
    )


def _check_port_free(host: str, port: int, label: str) -> None:
    """Fail with one clear line instead of uvicorn's SystemExit traceback when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StageError(f"cannot listen for {label} on {host}:{port}: {error.strerror}") from None


def _configure_logging() -> None:
    """Make our INFO lines visible when nobody configured logging (MLServer only sets up its own logger)."""
    ours = logging.getLogger("issue_titles")
    if not logging.getLogger().handlers and not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s"))
        ours.addHandler(handler)
    if ours.level == logging.NOTSET:
        # MLSERVER_DEBUG is honoured as a log level only: MLServer's `debug` also turns on traceback pages.
        ours.setLevel(logging.DEBUG if observability.truthy(os.environ.get("MLSERVER_DEBUG")) else logging.INFO)
