"""HTTP hardening MLServer 1.7 does not do itself: a request-size limit, bounded gzip, JSON 4xx everywhere.

What MLServer does on its own (mlserver/rest/app.py, rest/errors.py, rest/requests.py):
- `MLServerError` -> `{"error": str(exc)}` with the exception's status code (we reuse that for our errors);
- a V2 body that is not valid JSON or not a valid `InferenceRequest` -> FastAPI's 422 `{"detail": [...]}`;
- any other exception -> a plain-text 500; no body-size limit at all; gzip bodies are decompressed unbounded;
- the model-repository API (`/v2/repository/...`) lets any client unload the model.
`install(app, limits)` fixes each of these on MLServer's FastAPI app before the server starts.
"""

import logging
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class RequestGuard:
    """ASGI middleware: reads the body once, bounded, and refuses what the server should never parse."""

    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/v2/repository"):
            await send_json_error(send, 403, "the model repository API is disabled on this server")
            return
        if path.endswith("_stream"):
            await send_json_error(send, 404, "streaming inference is not supported; use /infer")
            return
        if scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return

        limit = self.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                await send_json_error(send, 400, "Content-Length is not a number", close=True)
                return
            if declared_size > limit:
                await send_json_error(send, 413, _too_large(f"{declared_size} bytes", limit), close=True)
                return
        encoding = (_header(scope, b"content-encoding") or b"identity").decode("latin-1").strip().lower()
        if encoding not in ("identity", "gzip"):
            await send_json_error(send, 415, f"Content-Encoding {encoding!r} is not supported; send plain or gzip JSON")
            return

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json_error(send, 413, _too_large(f"more than {limit} bytes", limit), close=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        replaced: dict[bytes, bytes] = {}
        if encoding == "gzip":
            try:
                body = _gunzip_bounded(body, limit)
            except _TooLarge:
                await send_json_error(send, 413, _too_large(f"more than {limit} bytes once decompressed", limit))
                return
            except (zlib.error, EOFError):
                await send_json_error(send, 400, "the body is not valid gzip data")
                return
            # MLServer's Request.body() would decompress again (unbounded) while this header is present.
            replaced[b"content-encoding"] = b""
            replaced[b"content-length"] = str(len(body)).encode()
        if path.endswith(V2_JSON_ROUTES):
            # V2 REST bodies are JSON whatever the client declares (`curl -d` says form-urlencoded); FastAPI would
            # otherwise not parse them and answer "Input should be a valid dictionary".
            replaced[b"content-type"] = b"application/json"
        if replaced:
            scope = dict(scope)
            headers = [(key, value) for key, value in scope.get("headers", []) if key.lower() not in replaced]
            scope["headers"] = headers + [(key, value) for key, value in replaced.items() if value]

        await self.app(scope, _replay(body, receive), send)


class _TooLarge(Exception):
    pass


def _too_large(actual: str, limit: int) -> str:
    return f"request body is too large ({actual}); at most {limit} bytes are allowed"


def _gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Gunzip without ever holding more than `limit + 1` output bytes (a gzip bomb stops at the limit)."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    output = decompressor.decompress(data, limit + 1)
    if len(output) > limit or decompressor.unconsumed_tail:
        raise _TooLarge()
    if not decompressor.eof:
        raise EOFError("truncated gzip data")
    return output


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
        return "the request body is empty: send a V2 inference request (a JSON object with \"inputs\")"
    parts = []
    for problem in problems[:3]:
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "request"
        parts.append(f"{location}: {problem.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "invalid V2 inference request: " + "; ".join(parts) + more


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return _json_error(400, describe_validation_error(error))


async def _on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    response = _json_error(error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error answering %s %s", request.method, request.url.path)
    return _json_error(500, "internal server error; see the server log")


def install(app: FastAPI, max_request_bytes: int) -> None:
    """Add the guard and the JSON error handlers to MLServer's app (before it starts serving)."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
    app.add_middleware(RequestGuard, max_request_bytes=max_request_bytes)
