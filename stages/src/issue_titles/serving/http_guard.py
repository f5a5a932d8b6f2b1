"""HTTP hardening MLServer 1.7 does not do itself: request size and time limits, bounded gzip, JSON 4xx everywhere.

What MLServer and uvicorn do on their own (mlserver/rest/app.py, rest/errors.py, rest/requests.py; uvicorn
protocols/http/h11_impl.py):
- `MLServerError` -> `{"error": str(exc)}` with the exception's status code (we reuse that for our errors);
- a V2 body that is not valid JSON or not a valid `InferenceRequest` -> FastAPI's 422 `{"detail": [...]}`;
- any other exception -> a plain-text 500; no body-size limit at all, and no time limit on a body that never ends;
- `Request.body()` gunzips, without a bound, whenever any `Content-Encoding` field contains "gzip";
- the model-repository API (`/v2/repository/...`) lets any client unload the model;
- uvicorn answers a request it cannot parse with a plain-text 400, and a refusal sent with `Connection: close`
  before the body is read makes the kernel reset the connection under clients still sending (urllib, requests).
`install(app, ...)` fixes each of these on MLServer's FastAPI app before the server starts; `JSONErrorsH11Protocol`
is the uvicorn protocol `server.IssueTitleServer` runs with.
"""

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import binary_tensors

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = {"POST", "PUT", "PATCH"}
V2_JSON_ROUTES = ("/infer", "/generate")


async def send_json_error(send: Send, status: int, message: str, *, close: bool = False) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


# An over-limit body is read and thrown away up to this size before the 413 goes out, so clients that send the
# whole body before reading (urllib, requests) get the 413 instead of "connection reset" (the kernel resets a
# connection closed with unread data). Beyond it the server closes while the client still sends.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
# `x-gzip` is the same coding (RFC 9110 §8.4.1.3); `identity` means "no coding" wherever it appears.
GZIP_CODINGS = {"gzip", "x-gzip"}
MAX_GZIP_LAYERS = 2


class Draining:
    """Set once the server was told to stop: from then on new requests get a JSON 503 (what a load balancer retries
    elsewhere) while the ones in flight finish."""

    def __init__(self) -> None:
        self.active = False


SHUTTING_DOWN = "the server is shutting down; retry the request (on another replica)"


class RequestGuard:
    """ASGI middleware: reads the body once, bounded in size and time, and refuses what the server should never
    parse. Every refusal of a request with a body first reads the rest of that body (bounded), see
    `DRAIN_LIMIT_BYTES`. While the server drains, new requests get a JSON 503, and a request the shutdown cancels
    gets one too (uvicorn would write a plain-text 500 and log a traceback)."""

    def __init__(
        self, app: ASGIApp, max_request_bytes: int, body_timeout: float, draining: Draining | None = None
    ) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.body_timeout = body_timeout
        self.draining = draining or Draining()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.draining.active:
            await send_json_error(send, 503, SHUTTING_DOWN, close=True)
        else:
            await self._guard_until_cancelled(scope, receive, send)

    async def _guard_until_cancelled(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`_guard`; if uvicorn cancels it once the graceful shutdown time is over, before its response started, a
        JSON 503. The cancellation is swallowed on purpose: the task ends with its answer written, instead of a
        traceback and a plain-text 500."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._guard(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not started:
                with contextlib.suppress(Exception):  # the connection is already gone
                    await send_json_error(send, 503, SHUTTING_DOWN, close=True)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        route = _refused_route(path)
        if scope.get("method") not in BODY_METHODS:  # no body to bound: only the route is checked
            if route is not None:
                await send_json_error(send, *route)
            else:
                await self.app(scope, receive, send)
            return
        body = _BodyReader(receive, _header(scope, b"expect") == b"100-continue", self.body_timeout)
        try:
            if route is not None:
                raise _Refusal(*route, drain=True, close=True)
            codings = self._check_headers(scope)
            raw = await self._read(body)
            if raw is None:  # the client went away
                return
            raw = _undo_codings(raw, codings, self.max_request_bytes)
            scope, raw, send = _handed_on(scope, path, raw, send)
        except _Refusal as refusal:
            if refusal.drain:
                await body.drain()
            await send_json_error(send, refusal.status, refusal.message, close=refusal.close)
            return
        await self.app(scope, _replay(raw, receive), send)

    def _check_headers(self, scope: Scope) -> list[str]:
        """What the headers alone refuse: a Content-Length that is no number or over the limit, a Content-Encoding
        other than gzip, too many gzip layers. Returns the content codings to undo."""
        limit = self.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                raise _Refusal(400, "Content-Length is not a number", close=True) from None
            if declared_size > limit:  # beyond DRAIN_LIMIT_BYTES not worth reading: answered at once, closing
                too_large = _too_large(f"{declared_size} bytes", limit)
                raise _Refusal(413, too_large, drain=declared_size <= DRAIN_LIMIT_BYTES, close=True)
        codings = content_codings(scope)
        unsupported = [coding for coding in codings if coding not in GZIP_CODINGS]
        if unsupported:
            message = f"Content-Encoding {unsupported[0]!r} is not supported; send plain or gzip JSON"
            raise _Refusal(415, message, drain=True, close=True)
        if len(codings) > MAX_GZIP_LAYERS:
            # Each layer is bounded, but thousands of them (a long header) would still keep the event loop busy.
            layers = f"Content-Encoding lists {len(codings)} gzip layers; at most {MAX_GZIP_LAYERS} are undone"
            raise _Refusal(415, layers, drain=True, close=True)
        return codings

    async def _read(self, body: "_BodyReader") -> bytes | None:
        """The whole body within the size and time limits; None if the client went away."""
        limit = self.max_request_bytes
        try:
            return await body.read(limit)
        except _TooLarge:
            raise _Refusal(413, _too_large(f"more than {limit} bytes", limit), drain=True, close=True) from None
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_timeout:g} s; send it whole"
            raise _Refusal(408, message, close=True) from None


class _Refusal(Exception):
    """A JSON error answered instead of the app's response. `drain`: read the rest of the body first (bounded, see
    `DRAIN_LIMIT_BYTES`); `close`: close the connection after the answer (part of the body may be left unread)."""

    def __init__(self, status: int, message: str, *, drain: bool = False, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.drain = drain
        self.close = close


def _refused_route(path: str) -> tuple[int, str] | None:
    """The routes never served, whatever the method: the model repository API (any client could unload the model)
    and streaming inference. (status, message), or None for a route the app answers."""
    if path.startswith("/v2/repository"):
        return 403, "the model repository API is disabled on this server"
    if path.endswith("_stream"):
        return 404, "streaming inference is not supported; use /infer"
    return None


def _undo_codings(raw: bytes, codings: list[str], limit: int) -> bytes:
    """The body with its gzip codings undone, each step bounded by `limit`. Codings apply in the order listed, so
    they are undone in reverse (RFC 9110 §8.4); all of them are gzip here."""
    for _ in codings:
        try:
            raw = _gunzip_bounded(raw, limit)
        except _TooLarge:
            raise _Refusal(413, _too_large(f"more than {limit} bytes once decompressed", limit)) from None
        except _TrailingData as error:
            raise _Refusal(
                400, f"the gzip body has {error.count} bytes of trailing data after its last member"
            ) from None
        except (zlib.error, EOFError):
            raise _Refusal(400, "the body is not valid gzip data") from None
    return raw


def _handed_on(scope: Scope, path: str, raw: bytes, send: Send) -> tuple[Scope, bytes, Send]:
    """What the app gets: the decoded body with headers that describe it, and on /infer binary tensors decoded (and
    `send` encoding binary outputs, when asked for)."""
    # Always drop Content-Encoding: MLServer's Request.body() gunzips, without a bound, whenever any of these
    # fields says gzip (mlserver 1.7, rest/requests.py), and the body handed on is already decoded.
    replaced: dict[bytes, bytes] = {b"content-encoding": b"", b"content-length": str(len(raw)).encode()}
    if path.endswith(V2_JSON_ROUTES):
        # V2 REST bodies are JSON whatever the client declares (`curl -d` says form-urlencoded); FastAPI would
        # otherwise not parse them and answer "Input should be a valid dictionary".
        replaced[b"content-type"] = b"application/json"
    if path.endswith("/infer"):
        raw, send = _binary_tensors(scope, raw, send, replaced)
    scope = dict(scope)
    headers = [(key, value) for key, value in scope.get("headers", []) if key.lower() not in replaced]
    scope["headers"] = headers + [(key, value) for key, value in replaced.items() if value]
    return scope, raw, send


def _binary_tensors(scope: Scope, raw: bytes, send: Send, replaced: dict[bytes, bytes]) -> tuple[bytes, Send]:
    """tritonclient's binary tensor extension on /infer: binary input tensors after the JSON are decoded into it
    (their header dropped, the length updated in `replaced`), and binary outputs, when asked for, encoded by `send`."""
    header_length = _header(scope, binary_tensors.HEADER)
    if header_length is not None:  # tritonclient's default: binary tensors after the JSON
        try:
            raw = binary_tensors.decode_request(raw, header_length)
        except binary_tensors.BinaryFormatError as error:
            raise _Refusal(400, f"binary tensor data: {error}") from None
        replaced[binary_tensors.HEADER] = b""
        replaced[b"content-length"] = str(len(raw)).encode()
    if b"binary_data" in raw:  # only then can the request ask for binary outputs; skip parsing it otherwise
        default, per_output = binary_tensors.binary_outputs_wanted(raw)
        if default or any(per_output.values()):
            send = _binary_response(send, default, per_output)
    return raw, send


def content_codings(scope: Scope) -> list[str]:
    """Every `Content-Encoding` field, as the one comma-separated list HTTP says they are, without `identity`.

    Duplicate fields and commas are equivalent (RFC 9110 §5.3, §8.4): `identity` + `gzip` is `identity, gzip`.
    """
    codings = []
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-encoding":
            for coding in value.decode("latin-1").split(","):
                coding = coding.strip().lower()
                if coding and coding != "identity":
                    codings.append(coding)
    return codings


class _BodyReader:
    """Reads a request body through ASGI `receive`, within a total time, and can throw the rest away."""

    def __init__(self, receive: Receive, expects_continue: bool, timeout: float) -> None:
        self._receive = receive
        self._expects_continue = expects_continue
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._size = 0
        self._ended = False

    async def _next(self) -> bytes | None:
        """The next chunk; None once the client has disconnected. TimeoutError past the deadline."""
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError()
        message = await asyncio.wait_for(self._receive(), remaining)
        if message["type"] == "http.disconnect":
            self._ended = True
            return None
        chunk = message.get("body", b"")
        self._size += len(chunk)
        self._ended = not message.get("more_body", False)
        return chunk

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None if the client left; `_TooLarge` as soon as it passes `limit` bytes."""
        chunks = []
        while not self._ended:
            chunk = await self._next()
            if chunk is None:
                return None
            if self._size > limit:
                raise _TooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    async def drain(self) -> None:
        """Read and discard the rest of the body, up to `DRAIN_LIMIT_BYTES` and the deadline.

        Not when the client waits for `100 Continue`: it has not sent the body and, told the final status
        first, never will (uvicorn sends the 100 on the first `receive`)."""
        if self._expects_continue and self._size == 0:
            return
        try:
            while not self._ended and self._size <= DRAIN_LIMIT_BYTES:
                if await self._next() is None:
                    return
        except TimeoutError:
            return


class _TooLarge(Exception):
    pass


def _too_large(actual: str, limit: int) -> str:
    return f"request body is too large ({actual}); at most {limit} bytes are allowed"


def _gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Gunzip every member (RFC 1952 §2.2: a gzip file is a series of members, as `gzip.decompress` reads it)
    without ever holding more than `limit + 1` output bytes (a gzip bomb stops at the limit).

    Zero bytes after the last member are padding (GNU gzip and Python skip them); anything else after it is
    refused (`_TrailingData`) rather than silently ignored."""
    outputs: list[bytes] = []
    size = 0
    rest = data
    while True:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        output = decompressor.decompress(rest, limit - size + 1)
        size += len(output)
        if size > limit or decompressor.unconsumed_tail:
            raise _TooLarge()
        if not decompressor.eof:
            raise EOFError("truncated gzip data")
        outputs.append(output)
        rest = decompressor.unused_data
        if not rest.strip(b"\0"):
            return b"".join(outputs)
        if not rest.startswith(b"\x1f\x8b"):
            raise _TrailingData(len(rest))


class _TrailingData(Exception):
    """Bytes after the last gzip member that are neither another member nor zero padding."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def _binary_response(send: Send, default: bool, per_output: dict[str, bool]) -> Send:
    """`send`, turning a 200 JSON inference response into the binary-extension response the client asked for."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def send_binary(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message.get("status") == 200:
            start = message
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        encoded = binary_tensors.encode_response(body, default, per_output)
        headers = [(key, value) for key, value in start.get("headers", []) if key.lower() != b"content-length"]
        if encoded is not None:
            body, json_size = encoded
            headers = [(key, value) for key, value in headers if key.lower() != b"content-type"]
            headers.append((b"content-type", b"application/octet-stream"))
            headers.append((binary_tensors.HEADER, str(json_size).encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return send_binary


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls only wait for the client to disconnect

    return replay


def describe_validation_error(error: RequestValidationError) -> str:
    """FastAPI's list of pydantic errors -> one line: 'malformed JSON: ...' or 'field.path: problem; ...'."""
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            detail = (problem.get("ctx") or {}).get("error") or problem.get("msg", "")
            return f"malformed JSON: {detail}"
    if any(problem.get("type") == "missing" and tuple(problem.get("loc", ())) == ("body",) for problem in problems):
        return 'the request body is empty: send a V2 inference request (a JSON object with "inputs")'
    parts = []
    for problem in problems[:3]:
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "request"
        parts.append(f"{location}: {problem.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "invalid V2 inference request: " + "; ".join(parts) + more


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # registered for it (Starlette types handlers as taking any)
    return _json_error(400, describe_validation_error(error))


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # registered for it
    response = _json_error(error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error answering %s %s", request.method, request.url.path)
    return _json_error(500, "internal server error; see the server log")


def install(app: FastAPI, max_request_bytes: int, body_timeout: float, draining: Draining | None = None) -> None:
    """Add the guard and the JSON error handlers to MLServer's app (before it starts serving)."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
    app.add_middleware(RequestGuard, max_request_bytes=max_request_bytes, body_timeout=body_timeout, draining=draining)


UNPARSABLE_REQUEST = "invalid HTTP request: its request line, headers or framing could not be parsed"


def _raw_json_response(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response with a JSON error, closing; for answers written before h11 has seen a request."""
    body = orjson.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


class JSONErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering the requests it cannot parse with a JSON 400 instead of plain text, and
    bounding what a connection may hold (see `guarded_protocol`).

    uvicorn 0.54 (protocols/http/h11_impl.py, `send_400_response`) writes `text/plain` "Invalid HTTP request
    received." itself, before any ASGI app sees the request, so no middleware can change it. Chosen explicitly
    (uvicorn's "auto" would pick httptools where it is installed, with its own plain-text 400).

    uvicorn itself only times out a keep-alive connection that stays silent after a response: a connection that
    sends nothing, or part of a header block, was held forever, and enough of them used up the open files so that
    nothing else was accepted. Here every connection waiting for its request headers has a deadline
    (`header_timeout`), and a connection over `max_connections` first closes the oldest one still waiting for
    headers (so the health routes keep answering while silent sockets pile up); only when every connection has a
    request in flight is the new one refused at once with a JSON 503."""

    header_timeout: float | None = None
    max_connections: int | None = None

    def connection_made(self, transport: Any) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            if not self._close_oldest_waiting():
                transport.write(_raw_json_response(
                    503, "Service Unavailable",
                    f"the server has {self.max_connections} connections with requests in flight; retry shortly",
                    b"retry-after: 1\r\n",
                ))  # fmt: skip
                transport.close()
                return
        self._arm_header_timer()

    def _waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _close_oldest_waiting(self) -> bool:
        """Close the connection (not this one) that has waited longest for request headers; False if none does."""
        waiting = [
            other for other in self.connections
            if other is not self and isinstance(other, JSONErrorsH11Protocol) and other._waiting_for_headers()
        ]  # fmt: skip
        if not waiting:
            return False
        oldest = min(waiting, key=lambda other: other._waiting_since)
        oldest._cancel_header_timer()
        oldest.transport.close()
        return True

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._waiting_since = self.loop.time()
        if self.header_timeout is not None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if not self._waiting_for_headers():
            return
        partial, _ = self.conn.trailing_data
        if partial:  # part of a request came: say why it is closed (a silent one is simply closed, as keep-alive is)
            message = f"the request headers did not arrive within {self.header_timeout:g} s"
            self.transport.write(_raw_json_response(408, "Request Timeout", message))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the headers are in: the body has its own timeout (body_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._waiting_for_headers() and getattr(self, "_header_timer", None) is None:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        body = orjson.dumps({"error": UNPARSABLE_REQUEST})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
            self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[JSONErrorsH11Protocol]:
    """`JSONErrorsH11Protocol` with this server's connection limits (uvicorn builds one protocol per connection)."""
    return type(
        "GuardedH11Protocol",
        (JSONErrorsH11Protocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )
