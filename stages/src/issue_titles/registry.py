"""A small client for the OCI distribution API (registry HTTP API v2): what `stages export` needs, no more.

It reads and writes manifests and blobs with plain HTTP calls, so the export step needs no image builder, no
daemon and no root. What each call relies on (opencontainers/distribution-spec v1.1.1, spec.md):
- `GET /v2/` (end-1, "Determining Support"): 200, or 401 with a `WWW-Authenticate` challenge.
- `GET|HEAD /v2/<name>/manifests/<reference>` (end-3, "Pulling manifests", "Checking if content exists"): the
  client sends `Accept`, the response's `Content-Type` names the manifest type.
- `GET|HEAD /v2/<name>/blobs/<digest>` (end-2): 200 or 404.
- `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>` (end-11, "Mounting a blob from another
  repository"): 201 when mounted; 202 plus an upload `Location` when the registry cannot mount.
- `POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=<digest>` (end-4a, end-6, "POST then PUT"): 202 with
  `Location` (absolute or relative, MAY carry query parameters), then 201.
- `PUT /v2/<name>/manifests/<tag>` (end-7, "Pushing Manifests"): `Content-Type` is the manifest's `mediaType`, the
  registry stores the exact bytes and answers 201; `Docker-Content-Digest` MUST equal the client's digest.
- Error bodies: `{"errors": [{"code", "message", "detail"}]}` ("Error Codes").
Authentication is not in the distribution spec; this follows the token flow every major registry implements
(distribution/distribution v2.8.3, docs/spec/auth/token.md): a 401 carries `WWW-Authenticate: Bearer
realm=...,service=...,scope=...`; the client GETs `realm?service=...&scope=...` (one `scope` parameter per scope)
with Basic credentials when it has them, and uses the `token` (or `access_token`) of the JSON answer as a Bearer
token. A `Basic` challenge means Basic credentials on every request.

Plain HTTP: like go-containerregistry v0.21.9 (pkg/name/registry.go `Scheme`, pkg/v1/remote/transport/ping.go),
https is tried first and http is allowed only for localhost, loopback, `*.localhost` and RFC 1918 addresses (a
registry on a kind network is reached by its private IP).

Credentials come from a docker config JSON (the `.dockerconfigjson` key of a kubernetes.io/dockerconfigjson secret):
`{"auths": {"<registry>": {"auth": base64("user:password")}}}` or `"username"`/`"password"`. They are only ever
sent in Authorization headers: no message, exception or record names them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from issue_titles.errors import StageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# Docker Hub: images without a registry live there; its API host differs from the name people write.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

# distribution-spec v1.1.1 spec.md, "Pulling manifests": the <name> and tag grammars.
_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# image-spec v1.1.1 descriptor.md, "Digests": the registered algorithms this client can verify.
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_HOST = re.compile(r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?$")


class RegistryError(StageError):
    """A registry refused or failed a request; the message names the registry and the cause, never a secret."""

    exit_code = 5


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hasher(digest: str):
    algorithm = digest.split(":", 1)[0]
    return hashlib.new(algorithm)


@dataclass(frozen=True)
class Reference:
    """An image reference split into its parts: `[registry/]repository[:tag][@digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """registry/repository, as people write it (Docker Hub's `library/` images included)."""
        return f"{self.registry}/{self.repository}"

    @property
    def manifest_reference(self) -> str:
        """What to ask the registry for: the digest when there is one (it pins the content), else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Docker's rules: the first part is a registry when it has a `.` or `:` or is `localhost`; else Docker Hub."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise StageError(f"{text!r} is not an image reference")
    rest, at, after = text.partition("@")
    digest = after if at else None
    if digest is not None and not _DIGEST.match(digest):
        raise StageError(f"image reference {text!r}: {digest!r} is not a sha256/sha512 digest")
    head, _, remainder = rest.partition("/")
    if remainder and ("." in head or ":" in head or head == "localhost"):
        registry, path = head, remainder
        if not _HOST.match(registry):
            raise StageError(f"image reference {text!r}: {registry!r} is not a registry host")
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    if ":" in path:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise StageError(f"image reference {text!r}: {tag!r} is not a valid tag")
    if registry.lower() in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _NAME.match(path):
        raise StageError(f"image reference {text!r}: {path!r} is not a valid repository name (lower-case)")
    return Reference(registry, path, tag, digest)


def _normalise_host(key: str) -> str:
    """`https://index.docker.io/v1/`, `registry.example.com`, `http://host:5000/` -> the host as a reference has it."""
    host = key.strip()
    if "://" in host:
        host = urlsplit(host).netloc
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def load_credentials(auth_file: Path) -> dict[str, Credentials]:
    """Registry host -> credentials from a docker config JSON; a broken file is an error naming the file."""
    path = Path(auth_file)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError("registry credentials file not found (is the registry secret mounted?)", path=path) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise StageError(
            f"registry credentials file is not readable JSON ({type(error).__name__})", path=path
        ) from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise StageError("registry credentials file has no `auths` object (expected a .dockerconfigjson)", path=path)
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise StageError(f"registry credentials for {key!r} are not an object", path=path)
        username, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise StageError(
                    f"registry credentials for {key!r}: `auth` is not base64 of user:password", path=path
                ) from None
            if ":" not in decoded:
                raise StageError(f"registry credentials for {key!r}: `auth` is not base64 of user:password", path=path)
            username, password = decoded.split(":", 1)
        if isinstance(username, str) and isinstance(password, str) and username:
            found[_normalise_host(key)] = Credentials(username, password)
    return found


def _may_use_http(host: str) -> bool:
    """go-containerregistry's rule: localhost, loopback, *.localhost and RFC 1918 addresses may speak plain HTTP."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(address in ipaddress.ip_network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, params = header.strip().partition(" ")
    values = {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in _CHALLENGE_PARAM.finditer(params)
    }
    return scheme.lower(), values


def _registry_errors(response: requests.Response) -> str:
    """The `errors` of a distribution-spec error body as `CODE: message`, else the HTTP reason."""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            parts = [
                f"{e.get('code', '?')}: {e.get('message') or ''}".rstrip(": ") for e in errors if isinstance(e, dict)
            ]
            if parts:
                return "; ".join(parts)
    except ValueError:
        pass
    return response.reason or "no reason given"


class _CountingBody:
    """A streamed request body of known length that hashes what it sends (requests sets Content-Length from len)."""

    def __init__(self, chunks: Iterable[bytes], size: int, digest: str) -> None:
        self._chunks = chunks
        self._size = size
        self.hash = _hasher(digest)
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if chunk:
                self.hash.update(chunk)
                self.sent += len(chunk)
                yield chunk


class RegistryClient:
    """One registry: discovers its scheme and auth on the first call, then sends authorised requests."""

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        scopes: Iterable[str] = (),
        session: requests.Session | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.registry = registry
        self.host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self._credentials = credentials
        self._scopes = list(dict.fromkeys(scopes))
        self._session = session or requests.Session()
        # Proxy and CA settings from the environment still apply (Pachyderm passes its proxy settings to workers);
        # a session-level auth that changes nothing stops requests from adding ~/.netrc credentials of its own.
        self._session.auth = _headers_only
        self._timeout = timeout
        self._base: str | None = None
        self._authorization: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None

    # -- connection and authentication -------------------------------------------------------------------------------

    def _fail(self, what: str, cause: str) -> RegistryError:
        return RegistryError(f"registry {self.registry}: {what}: {cause}")

    def ping(self) -> None:
        """GET /v2/ (end-1) over https, or http where allowed; remembers the scheme and authenticates."""
        schemes = ["https", "http"] if _may_use_http(self.host) else ["https"]
        failures: list[str] = []
        for scheme in schemes:
            try:
                response = self._session.get(f"{scheme}://{self.host}/v2/", timeout=self._timeout)
            except requests.RequestException as error:
                failures.append(f"{scheme}: {type(error).__name__}: {_short(error)}")
                continue
            self._base = f"{scheme}://{self.host}"
            if response.status_code == 401:
                self._challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                self._authenticate()
            elif response.status_code != 200:
                raise self._fail("GET /v2/", f"HTTP {response.status_code} ({_registry_errors(response)})")
            return
        raise self._fail("cannot connect", "; ".join(failures))

    def _authenticate(self, extra_scopes: Iterable[str] = ()) -> None:
        scheme, params = self._challenge or ("", {})
        if scheme == "basic":
            if self._credentials is None:
                raise self._fail("authentication required", self._no_credentials())
            self._authorization = self._credentials.basic()
            return
        if scheme != "bearer" or not params.get("realm"):
            raise self._fail("authentication required", f"unsupported challenge scheme {scheme or 'none'!r}")
        scopes = list(dict.fromkeys([*self._scopes, *extra_scopes]))
        query: list[tuple[str, str]] = [("service", params["service"])] if params.get("service") else []
        query += [("scope", scope) for scope in scopes]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        try:
            response = self._session.get(params["realm"], params=query, headers=headers, timeout=self._timeout)
        except requests.RequestException as error:
            raise self._fail("token request failed", f"{type(error).__name__}: {_short(error)}") from None
        if response.status_code in (401, 403):
            cause = "the credentials were refused" if self._credentials else self._no_credentials()
            raise self._fail(f"token request HTTP {response.status_code}", cause)
        if response.status_code != 200:
            raise self._fail("token request", f"HTTP {response.status_code} ({_registry_errors(response)})")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._fail("token request", "the answer holds no `token`")
        self._authorization = f"Bearer {token}"

    def _no_credentials(self) -> str:
        return f"no credentials for {self.registry} in REGISTRY_AUTH_FILE"

    def request(self, method: str, path_or_url: str, *, expect: Iterable[int], what: str, **kwargs: Any):
        """One call; a 401 re-runs the token flow once with the challenge's scope (when the body can be re-sent)."""
        if self._base is None:
            self.ping()
        url = path_or_url if "://" in path_or_url else f"{self._base}{path_or_url}"
        expect = tuple(expect)
        base_headers = dict(kwargs.pop("headers", None) or {})
        data = kwargs.get("data")
        for attempt in (1, 2):
            headers = dict(base_headers)
            if self._authorization and urlsplit(url).netloc == self.host:
                # An upload Location may point at another server (spec: "does not necessarily need to be provided
                # by the registry itself"); the registry's token or password stays with the registry.
                headers["Authorization"] = self._authorization
            rewind = getattr(data, "seek", None)
            if rewind is not None:
                rewind(0)
            try:
                response = self._session.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
            except requests.RequestException as error:
                raise self._fail(what, f"{type(error).__name__}: {_short(error)}") from None
            resendable = data is None or isinstance(data, (bytes, bytearray, str)) or hasattr(data, "seek")
            if response.status_code == 401 and attempt == 1 and resendable:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                if challenge[0] in ("basic", "bearer"):
                    self._challenge = challenge
                    self._authenticate(extra_scopes=[challenge[1]["scope"]] if challenge[1].get("scope") else [])
                    continue
            if response.status_code in expect:
                return response
            if response.status_code == 401:
                cause = "the credentials were refused" if self._credentials else self._no_credentials()
                raise self._fail(f"{what}: HTTP 401", cause)
            raise self._fail(what, f"HTTP {response.status_code} ({_registry_errors(response)})")
        raise AssertionError("unreachable")

    # -- manifests ---------------------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(exact bytes, media type, digest); a digest reference is verified against the bytes."""
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            expect=(200,),
            what=f"GET manifest {repository}{'@' if ':' in reference else ':'}{reference}",
            headers={"Accept": ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))},
        )
        body = response.content
        digest = sha256_digest(body)
        if _DIGEST.match(reference) and _digest_of(body, reference) != reference:
            raise self._fail(f"manifest {repository}@{reference}", "the registry sent content with another digest")
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        try:
            document = json.loads(body)
        except ValueError:
            raise self._fail(f"manifest {repository}:{reference}", "not JSON") from None
        declared = document.get("mediaType") if isinstance(document, dict) else None
        if declared:
            media_type = declared  # spec: a manifest's own mediaType must match Content-Type; it is the source of truth
        return body, media_type, reference if _DIGEST.match(reference) else digest

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            expect=(200, 201),
            what=f"PUT manifest {repository}:{tag}",
            data=body,
            headers={"Content-Type": media_type},
        )
        digest = sha256_digest(body)
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise self._fail(f"PUT manifest {repository}:{tag}", f"the registry stored {answered}, not {digest}")
        return digest

    # -- blobs -------------------------------------------------------------------------------------------------------

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", expect=(200,), what=f"GET blob {repository}@{digest}"
        )
        if _digest_of(response.content, digest) != digest:
            raise self._fail(f"blob {repository}@{digest}", "the registry sent content with another digest")
        return response.content

    def open_blob(self, repository: str, digest: str) -> requests.Response:
        return self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            expect=(200,),
            what=f"GET blob {repository}@{digest}",
            stream=True,
        )

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", expect=(200, 404), what=f"HEAD blob {repository}@{digest}"
        )
        return response.status_code == 200

    def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """None when mounted (201); else the upload location the registry opened instead (202)."""
        response = self.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            params={"mount": digest, "from": source},
            expect=(201, 202),
            what=f"mount blob {digest} from {source} into {repository}",
        )
        return None if response.status_code == 201 else self._location(response, "mount")

    def start_upload(self, repository: str) -> str:
        response = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", expect=(202,), what=f"start blob upload to {repository}"
        )
        return self._location(response, "start blob upload")

    def finish_upload(self, location: str, digest: str, data: Any, size: int) -> None:
        """PUT <location>?digest=... with the whole blob (monolithic upload, end-6)."""
        separator = "&" if urlsplit(location).query else "?"
        self.request(
            "PUT",
            f"{location}{separator}digest={digest}",
            expect=(201,),
            what=f"PUT blob {digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )

    def _location(self, response: requests.Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise self._fail(what, f"HTTP {response.status_code} without a Location header")
        return urljoin(f"{self._base}/", location)  # relative or absolute (spec: either is allowed)

    def upload_bytes(self, repository: str, digest: str, data: bytes) -> None:
        self.finish_upload(self.start_upload(repository), digest, data, len(data))


def copy_blob(
    source: RegistryClient,
    source_repo: str,
    target: RegistryClient,
    target_repo: str,
    descriptor: Mapping[str, Any],
    location: str | None = None,
) -> None:
    """Stream one blob from a repository (of any registry) into another, checking its digest on the way."""
    digest, size = descriptor["digest"], int(descriptor["size"])
    response = source.open_blob(source_repo, digest)
    with response:
        body = _CountingBody(response.iter_content(chunk_size=1 << 20), size, digest)
        target.finish_upload(location or target.start_upload(target_repo), digest, body, size)
    if body.sent != size or f"{digest.split(':')[0]}:{body.hash.hexdigest()}" != digest:
        raise RegistryError(f"registry {source.registry}: blob {source_repo}@{digest} did not match its descriptor")


def _headers_only(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _digest_of(data: bytes, like: str) -> str:
    hasher = _hasher(like)
    hasher.update(data)
    return f"{like.split(':')[0]}:{hasher.hexdigest()}"


def _short(error: Exception | None) -> str:
    text = " ".join((str(error) if error is not None else "unknown error").split())  # one line, whatever it held
    return text if len(text) <= 200 else text[:200] + "…"
