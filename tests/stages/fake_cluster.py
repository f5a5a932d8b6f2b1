"""Two in-process fakes on 127.0.0.1 for the TFJob launcher: the Kubernetes API's TFJob endpoints and a Pachyderm S3
gateway.

Kubernetes: `POST|GET|DELETE /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs[/<name>]` and
`POST|DELETE /api/v1/namespaces/<ns>/secrets[/<name>]` with bearer-token auth (401 without the token), 409
AlreadyExists / 404 NotFound as `Status` objects with a `message`, as the API server answers. A created TFJob gets a
`metadata.uid`; deleting a TFJob removes the Secrets whose ownerReferences name its uid, as the garbage collector
does (recorded apart, in `collected`).
Each GET of a TFJob returns the next status of a script (the training operator's conditions and replicaStatuses,
kubeflow/training-operator v1.9.0 pkg/controller.v1/tensorflow/tfjob_controller.go UpdateJobStatus), the last one
repeating.

S3: path-style ListObjects (v1, `marker` paging with a small page), GET and PUT object, on buckets held in memory; a
request whose Host does not start with the job's service name gets a 500, as the sidecar's router answers
(pachyderm/pachyderm 2.12.x src/server/pfs/s3/s3.go Server). Authentication as the gateway does it, written here
from s2's Go code and not from the client's signer (pachyderm/s2 e4a20345d93c s2.go authMiddleware, authV4,
bodyReadingMiddleware; util_header.go normURI, normQuery, parseAWSTimestamp) with Pachyderm's controller
(src/server/pfs/s3/auth.go): an AWS4-HMAC-SHA256 request is checked with the access key as its own secret (an unknown
token -> 403 InvalidAccessKeyId while auth is on; a wrong signature -> 403 SignatureDoesNotMatch; a time off by more
than 15 minutes -> 403 RequestTimeTooSkewed); a request without one passes only while auth is off (else 403
AccessDenied); an `x-amz-content-sha256` that is not 64 hex digits -> 400 InvalidDigest, one that is not the body's
-> 400 BadDigest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit
from xml.sax.saxutils import escape

TFJOBS = "/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs"
SECRETS = "/api/v1/namespaces/{namespace}/secrets"


def condition(kind: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


RUNNING = {
    "conditions": [
        condition("Created", "TFJobCreated", "TFJob is created."),
        condition("Running", "TFJobRunning", "TFJob is running."),
    ],
    "replicaStatuses": {"Worker": {"active": 2}},
}
SUCCEEDED = {
    "conditions": [
        condition("Created", "TFJobCreated"),
        condition("Running", "TFJobRunning"),
        condition("Succeeded", "TFJobSucceeded", "TFJob successfully completed."),
    ],
    "replicaStatuses": {"Worker": {"succeeded": 2}},
}
FAILED = {
    "conditions": [
        condition("Created", "TFJobCreated"),
        condition(
            "Failed", "TFJobFailed", "TFJob issue-titles/train-job1 has failed because 1 Worker replica(s) failed."
        ),
    ],
    "replicaStatuses": {"Worker": {"active": 1, "failed": 1}},
}


@dataclass
class KubeState:
    namespace: str = "issue-titles"
    token: str = "sa-token"
    script: list[dict] = field(default_factory=lambda: [{}, RUNNING, SUCCEEDED])
    jobs: dict[str, dict] = field(default_factory=dict)
    gets: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    created: list[dict] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    secrets: dict[str, dict] = field(default_factory=dict)
    secrets_created: list[dict] = field(default_factory=list)
    secrets_deleted: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)  # Secrets the garbage collector removed with their TFJob
    created_uids: dict[str, str] = field(default_factory=dict)  # TFJob name -> the uid it was given


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _serve(handler_class, state) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (handler_class,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    # A quick shutdown(): serve_forever looks for it every poll_interval (0.5 s by default).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _KubeHandler(BaseHTTPRequestHandler):
    state: KubeState

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _route(self) -> str | None:
        """The TFJob name ('' for the collection), or None after answering 401/404 or a Secrets request."""
        state = self.state
        state.requests.append((self.command, self.path))
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            self._status(401, "Unauthorized", "Unauthorized")
            return None
        base = TFJOBS.format(namespace=state.namespace)
        path = urlsplit(self.path).path
        if path == base:
            return ""
        if path.startswith(base + "/"):
            return path[len(base) + 1 :]
        secrets = SECRETS.format(namespace=state.namespace)
        if path == secrets and self.command == "POST":
            self._create_secret()
            return None
        if path.startswith(secrets + "/") and self.command == "DELETE":
            self._delete_secret(path[len(secrets) + 1 :])
            return None
        self._status(404, "NotFound", f"the server could not find the requested resource ({path})")
        return None

    def _create_secret(self) -> None:
        manifest = self._body()
        name = manifest["metadata"]["name"]
        if name in self.state.secrets:
            self._status(409, "AlreadyExists", f'secrets "{name}" already exists')
            return
        self.state.secrets[name] = manifest
        self.state.secrets_created.append(manifest)
        self._send(201, manifest)

    def _delete_secret(self, name: str) -> None:
        self._body()
        if self.state.secrets.pop(name, None) is None:
            self._status(404, "NotFound", f'secrets "{name}" not found')
            return
        self.state.secrets_deleted.append(name)
        self._send(200, {"kind": "Status", "status": "Success"})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self) -> None:
        name = self._route()
        if name is None:
            return
        manifest = self._body()
        name = manifest["metadata"]["name"]
        if name in self.state.jobs:
            self._status(409, "AlreadyExists", f'tfjobs.kubeflow.org "{name}" already exists')
            return
        self.state.created.append(json.loads(json.dumps(manifest)))  # as the launcher sent it
        manifest["metadata"]["uid"] = self.state.created_uids[name] = str(uuid.uuid4())
        self.state.jobs[name] = manifest
        self.state.gets[name] = 0
        self._send(201, manifest)

    def do_GET(self) -> None:
        name = self._route()
        if name is None:
            return
        if name not in self.state.jobs:
            self._status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
            return
        script = self.state.script
        status = script[min(self.state.gets[name], len(script) - 1)]
        self.state.gets[name] += 1
        self._send(200, self.state.jobs[name] | {"status": status})

    def do_DELETE(self) -> None:
        name = self._route()
        if name is None:
            return
        self._body()
        job = self.state.jobs.pop(name, None)
        if job is None:
            self._status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
            return
        self.state.deleted.append(name)
        uid = job["metadata"].get("uid")
        for secret_name, secret in list(self.state.secrets.items()):
            if uid and any(ref.get("uid") == uid for ref in secret["metadata"].get("ownerReferences") or []):
                del self.state.secrets[secret_name]
                self.state.collected.append(secret_name)
        self._send(200, {"kind": "Status", "status": "Success"})


def fake_kube(state: KubeState) -> tuple[ThreadingHTTPServer, str]:
    return _serve(_KubeHandler, state)


@dataclass
class S3State:
    service: str | None = None  # when set, the Host must start with "<service>." (the sidecar's routing)
    buckets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    page: int = 2  # keys per ListObjects page, small so paging is exercised
    hosts: list[str] = field(default_factory=list)
    tokens: set[str] | None = None  # Pachyderm auth on: the valid tokens (None: auth off)
    auth: list[str] = field(default_factory=list)  # per request: "v4 <access key>", "custom" or the refusal's code


# s2 e4a20345d93c s2.go authV4HeaderValidator
AUTH_V4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]*)/([^/]*)/([^/]*)/s3/aws4_request, ?SignedHeaders=([^,]+), "
    r"?Signature=(.+)$"
)
SKEW = timedelta(minutes=15)


def _go_norm_uri(path: str) -> str:
    """s2 normURI: each segment of the decoded path, escaped but for A-Z a-z 0-9 - _ . ~"""
    return "/".join(quote(part, safe="-_.~") for part in path.split("/"))


def _go_norm_query(query: str) -> str:
    """s2 normQuery: Go's url.Values.Encode (keys sorted, QueryEscape) with '+' as %20."""
    values = parse_qs(query, keep_blank_values=True)
    return "&".join(
        f"{quote_plus(k, safe='-_.~')}={quote_plus(v, safe='-_.~')}" for k in sorted(values) for v in values[k]
    ).replace("+", "%20")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class _S3Handler(BaseHTTPRequestHandler):
    state: S3State

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, data: bytes = b"", content_type: str = "application/xml") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, name: str) -> None:
        self.state.auth.append(name)
        self._send(code, f"<Error><Code>{name}</Code><Message>{name}</Message></Error>".encode())

    def _authenticate(self, body: bytes) -> bool:
        """s2's authMiddleware, then its bodyReadingMiddleware's digest check; False after answering the refusal."""
        header = self.headers.get("Authorization", "")
        if header.startswith("AWS4-HMAC-SHA256 "):
            match = AUTH_V4.match(header)
            if not match:
                self._error(400, "AuthorizationHeaderMalformed")
                return False
            access_key, date, region, signed, signature = match.groups()
            if self.state.tokens is not None and access_key not in self.state.tokens:
                self._error(403, "InvalidAccessKeyId")  # SecretKey: WhoAmI with the key as token failed
                return False
            keys = sorted(signed.split(";"))
            canonical_headers = "".join(
                f"{key}:{self.headers.get('Host', '') if key == 'host' else (self.headers.get(key) or '').strip()}\n"
                for key in keys
            )
            parts = urlsplit(self.path)
            request = "\n".join(
                [
                    self.command,
                    _go_norm_uri(unquote(parts.path)),
                    _go_norm_query(parts.query),
                    canonical_headers,
                    ";".join(keys),
                    self.headers.get("x-amz-content-sha256") or "",
                ]
            )
            try:
                stamp = datetime.strptime(self.headers.get("x-amz-date") or "", "%Y%m%dT%H%M%SZ")
            except ValueError:
                self._error(403, "AccessDenied")
                return False
            stamp = stamp.replace(tzinfo=UTC)
            if abs(datetime.now(UTC) - stamp) >= SKEW:
                self._error(403, "RequestTimeTooSkewed")
                return False
            to_sign = "\n".join(
                [
                    "AWS4-HMAC-SHA256",
                    stamp.strftime("%Y%m%dT%H%M%SZ"),
                    f"{date}/{region}/s3/aws4_request",
                    hashlib.sha256(request.encode()).hexdigest(),
                ]
            )
            key = _hmac(_hmac(_hmac(_hmac(("AWS4" + access_key).encode(), date), region), "s3"), "aws4_request")
            if hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() != signature:
                self._error(403, "SignatureDoesNotMatch")
                return False
            method = f"v4 {access_key}"
        elif header.startswith("AWS "):
            self._error(501, "NotImplemented")  # V2: s2 checks it too; this fake does not
            return False
        else:
            if self.state.tokens is not None:  # CustomAuth: only while auth is off
                self._error(403, "AccessDenied")
                return False
            method = "custom"
        digest = self.headers.get("x-amz-content-sha256")
        if digest is not None:
            if len(digest) != 64:
                self._error(400, "InvalidDigest")
                return False
            if hashlib.sha256(body).hexdigest() != digest:
                self._error(400, "BadDigest")
                return False
        self.state.auth.append(method)
        return True

    def _target(self, body: bytes = b"") -> tuple[str, str] | None:
        host = self.headers.get("Host", "")
        self.state.hosts.append(host)
        if self.state.service and not host.startswith(self.state.service + "."):
            self._send(500)
            return None
        if not self._authenticate(body):
            return None
        parts = unquote(urlsplit(self.path).path).lstrip("/").split("/", 1)
        bucket, key = parts[0], parts[1] if len(parts) > 1 else ""
        if bucket not in self.state.buckets:
            self._send(
                404, b"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
            )
            return None
        return bucket, key

    def do_GET(self) -> None:
        target = self._target()
        if target is None:
            return
        bucket, key = target
        objects = self.state.buckets[bucket]
        if key:
            if key not in objects:
                self._send(404, b"<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>")
            else:
                self._send(200, objects[key], "application/octet-stream")
            return
        marker = parse_qs(urlsplit(self.path).query).get("marker", [""])[0]
        keys = sorted(k for k in objects if k > marker)
        page, truncated = keys[: self.state.page], len(keys) > self.state.page
        body = "".join(f"<Contents><Key>{escape(k)}</Key><Size>{len(objects[k])}</Size></Contents>" for k in page)
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
            f'2006-03-01/"><Name>{bucket}</Name><Marker>{escape(marker)}</Marker>'
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{body}</ListBucketResult>"
        )
        self._send(200, xml.encode())

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self._target(body)
        if target is None:
            return
        bucket, key = target
        self.state.buckets[bucket][key] = body
        self._send(200)


def fake_s3(state: S3State) -> tuple[ThreadingHTTPServer, str]:
    """The gateway at http://127.0.0.1:<port> (a job's service name does not resolve here, so the Host check is off
    unless `state.service` is set)."""
    return _serve(_S3Handler, state)
