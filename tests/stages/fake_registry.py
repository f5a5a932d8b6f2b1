"""An in-process registry speaking the subset of the OCI distribution API `stages export` uses, on 127.0.0.1.

What it implements, after opencontainers/distribution-spec v1.1.1 spec.md: `GET /v2/` (end-1), `GET|HEAD` manifests
(end-3) and blobs (end-2), `POST /v2/<name>/blobs/uploads/` (end-4a) with `?mount=&from=` (end-11, 201 when the
blob is in the `from` repository, else 202 with an upload session), `PUT <location>?digest=` (end-6, the digest is
checked), `PUT` manifests (end-7, 201 + `Docker-Content-Digest`, referenced blobs must exist:
MANIFEST_BLOB_UNKNOWN) and error bodies `{"errors": [{"code", "message"}]}`. Auth modes: "token" (a 401 with
`WWW-Authenticate: Bearer realm,service,scope`, a token endpoint taking Basic credentials and granting the scopes
asked for, as in distribution/distribution v2.8.3 docs/spec/auth/token.md), "basic" or "none". Upload locations
are relative and carry a query parameter, as the spec allows, so a client must append `&digest=`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class RegistryState:
    auth: str = "token"  # "token", "basic" or "none"
    username: str = "robot"
    password: str = "pw"
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes (one store)
    repo_blobs: dict[str, set[str]] = field(default_factory=dict)  # repository -> digests it holds
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(
        default_factory=dict
    )  # (repo, tag|digest) -> (body, type)
    uploads: dict[str, str] = field(default_factory=dict)  # session id -> repository
    tokens: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # token -> {(repository, action)}
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)

    def add_blob(self, repository: str, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repository, set()).add(digest)
        return digest

    def add_manifest(self, repository: str, tag: str | None, body: bytes, media_type: str) -> str:
        digest = digest_of(body)
        self.manifests[(repository, digest)] = (body, media_type)
        if tag:
            self.manifests[(repository, tag)] = (body, media_type)
        return digest


class FakeRegistry:
    def __init__(self, auth: str = "token") -> None:
        self.state = RegistryState(auth=auth)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        # serve_forever checks for shutdown() every poll_interval (0.5 s by default): each test's registry would
        # wait that out when it stops.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        return self.state.manifests[(repository, reference)]

    def blob(self, digest: str) -> bytes:
        return self.state.blobs[digest]


_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)$")
_OBJECT = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>blobs|manifests)/(?P<ref>[^/]+)$")


def _handler(registry: FakeRegistry):
    state = registry.state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        # -- helpers ---------------------------------------------------------------------------------------------

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _challenge(self, scope: str | None) -> dict[str, str]:
            if state.auth == "basic":
                return {"WWW-Authenticate": 'Basic realm="fake-registry"'}
            value = f'Bearer realm="http://{registry.host}/token",service="fake-registry"'
            if scope:
                value += f',scope="{scope}"'
            return {"WWW-Authenticate": value}

        def _allowed(self, repository: str | None, action: str | None) -> bool:
            header = self.headers.get("Authorization", "")
            if state.auth == "none":
                return True
            if state.auth == "basic":
                return header == _basic(state.username, state.password)
            if not header.startswith("Bearer "):
                return False
            grants = state.tokens.get(header[len("Bearer ") :])
            if grants is None:
                return False
            return repository is None or (repository, action) in grants

        def _authorize(self, repository: str | None, action: str | None) -> bool:
            if self._allowed(repository, action):
                return True
            scope = f"repository:{repository}:{action}" if repository else None
            self._error(401, "UNAUTHORIZED", "authentication required", self._challenge(scope))
            return False

        def _record(self) -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            state.requests.append(Seen(self.command, parts.path, query, dict(self.headers.items())))
            return parts.path, query

        # -- endpoints -------------------------------------------------------------------------------------------

        def do_GET(self) -> None:
            path, query = self._record()
            if path == "/token":
                return self._token(query)
            if path == "/v2/":
                if self._authorize(None, None):
                    self._send(200, b"{}", {"Content-Type": "application/json"})
                return None
            return self._object(path, send_body=True)

        def do_HEAD(self) -> None:
            path, _ = self._record()
            return self._object(path, send_body=False)

        def do_POST(self) -> None:
            path, query = self._record()
            match = _UPLOADS.match(path)
            if not match or match["session"]:
                return self._error(404, "UNSUPPORTED", "not found")
            name = match["name"]
            self._body()
            if not self._authorize(name, "push"):
                return None
            if "mount" in query:
                digest, source = query["mount"][0], (query.get("from") or [""])[0]
                if not self._allowed(source, "pull"):
                    pass  # a registry that cannot mount opens an upload instead (spec: SHOULD return 202)
                elif digest in state.repo_blobs.get(source, set()):
                    state.repo_blobs.setdefault(name, set()).add(digest)
                    return self._send(
                        201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
                    )
            session = uuid.uuid4().hex
            state.uploads[session] = name
            self._send(
                202,
                b"",
                {
                    "Location": f"/v2/{name}/blobs/uploads/{session}?_state={secrets.token_hex(4)}",
                    "Docker-Upload-UUID": session,
                },
            )

        def do_PUT(self) -> None:
            path, query = self._record()
            body = self._body()
            match = _UPLOADS.match(path)
            if match and match["session"]:
                name = match["name"]
                if not self._authorize(name, "push"):
                    return None
                if state.uploads.pop(match["session"], None) != name:
                    return self._error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
                digest = (query.get("digest") or [""])[0]
                if digest_of(body) != digest:
                    return self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
                state.add_blob(name, body)
                return self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})
            match = _OBJECT.match(path)
            if not match or match["kind"] != "manifests":
                return self._error(404, "UNSUPPORTED", "not found")
            name, reference = match["name"], match["ref"]
            if not self._authorize(name, "push"):
                return None
            media_type = self.headers.get("Content-Type", "")
            try:
                manifest = json.loads(body)
            except ValueError:
                return self._error(400, "MANIFEST_INVALID", "not JSON")
            if manifest.get("mediaType") and manifest["mediaType"] != media_type:
                return self._error(400, "MANIFEST_INVALID", "mediaType differs from Content-Type")
            held = state.repo_blobs.get(name, set())
            for descriptor in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                if descriptor.get("digest") not in held:
                    return self._error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown: {descriptor.get('digest')}")
            digest = state.add_manifest(name, reference, body, media_type)
            self._send(201, b"", {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest})

        def _object(self, path: str, send_body: bool) -> None:
            match = _OBJECT.match(path)
            if not match:
                return self._error(404, "UNSUPPORTED", "not found")
            name, kind, reference = match["name"], match["kind"], match["ref"]
            if not self._authorize(name, "pull"):
                return None
            if kind == "blobs":
                if reference not in state.repo_blobs.get(name, set()):
                    return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                data = state.blobs[reference]
                return self._send(
                    200, data, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": reference}
                )
            if (name, reference) not in state.manifests:
                return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            body, media_type = state.manifests[(name, reference)]
            self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)})

        def _token(self, query: dict[str, list[str]]) -> None:
            state.token_requests.append(query)
            if self.headers.get("Authorization") != _basic(state.username, state.password):
                return self._error(401, "UNAUTHORIZED", "bad credentials")
            grants = set()
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                repository, _, actions = rest.rpartition(":")
                if kind == "repository":
                    grants |= {(repository, action) for action in actions.split(",")}
            token = secrets.token_hex(16)
            state.tokens[token] = grants
            self._send(
                200, json.dumps({"token": token, "expires_in": 300}).encode(), {"Content-Type": "application/json"}
            )

    return Handler


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
