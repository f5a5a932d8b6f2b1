"""Files in and out of a Pachyderm S3 gateway, for the TFJob replicas that train outside the pipeline's pod.

An S3-enabled pipeline (`input.pfs.s3: true`, `s3Out: true`) does not mount its input or output: its worker's
sidecar serves the job's input commit as the bucket named after the input and the output commit as the bucket `out`,
at `S3_ENDPOINT` (`http://<job's s3 service>.<namespace>:<port>`, a headless Service other pods reach), and hands the
credentials as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (pachyderm/pachyderm 2.12.x
src/server/worker/driver/driver.go, src/server/pps/server/s3g_sidecar.go). The gateway answers a request by the
first label of its Host header, so requests go to S3_ENDPOINT exactly as given, path-style.

Requests are signed with AWS Signature Version 4 whenever the worker hands credentials (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, which a TFJob replica gets from the launcher's Secret): with Pachyderm auth on, the gateway
admits only signed requests (src/server/pfs/s3/auth.go: CustomAuth, the path of a request without an AWS
Authorization header, passes only while auth is off; SecretKey accepts an access key that is a valid Pachyderm token
and returns it as the secret key). The worker sets both variables to the pipeline's token, or to `default` while auth
is off, which the gateway then accepts too (src/server/worker/driver/driver.go). Without credentials (local runs)
requests go unsigned. How the gateway checks a signature (pachyderm/s2 e4a20345d93c s2.go authV4, util_header.go):
region and date come from the Credential scope (Pachyderm ignores the region), the canonical URI is the decoded
path re-encoded per segment, the canonical query is the sorted, %20-encoded form, and the payload hash is the
`x-amz-content-sha256` header, which the body-reading middleware requires to be 64 hex digits equal to the body's
SHA-256: `UNSIGNED-PAYLOAD` is refused (InvalidDigest), so every request carries its body's hash. The request time
(`x-amz-date`) must be within 15 minutes of the gateway's clock. Only the calls the replicas need: list
(ListObjects v1: `marker`, and `NextMarker` on a truncated page, as s2 bucket.go answers; s2 e4a20345d93c is the
version Pachyderm 2.12.x's go.mod pins), get, put. The gateway takes bodies up to 4 GiB and gives each request 5
minutes (src/server/pfs/s3/s3.go).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests

from issue_titles.errors import StageError
from issue_titles.provenance import sha256_file

S3_ENDPOINT_ENV = "S3_ENDPOINT"
ACCESS_KEY_ENV, SECRET_KEY_ENV = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
TIMEOUT = (10, 300)  # connect, read (a large array)
# Any region passes (Pachyderm's SecretKey only logs it); the one S3 clients default to.
REGION = "us-east-1"
ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Credentials:
    """An access key and its secret; repr hides the secret (a Pachyderm token) from logs and tracebacks."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "Credentials(access_key=***, secret_key=***)"


def credentials_from_env(env: Mapping[str, str] = os.environ) -> Credentials | None:
    """The worker's (or replica's) S3 credentials, or None when there are none (requests then go unsigned)."""
    access, secret = env.get(ACCESS_KEY_ENV, ""), env.get(SECRET_KEY_ENV, "")
    if not access and not secret:
        return None
    if not (access and secret):
        raise StageError(f"only one of {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} is set: the S3 gateway needs both")
    return Credentials(access, secret)


def _uri_encode(text: str, safe: str = "") -> str:
    """AWS's URI encoding: everything but A-Z a-z 0-9 - _ . ~ (and `safe`) as %XX of its UTF-8 bytes."""
    return quote(text, safe=safe + "-_.~")


def canonical_query(query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{_uri_encode(key)}={_uri_encode(value)}" for key, value in pairs)


def canonical_request(method: str, url: str, headers: Mapping[str, str], payload_hash: str) -> tuple[str, str]:
    """The canonical request and the signed-header list for `headers` (all of them are signed)."""
    parts = urlsplit(url)
    lowered = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    names = sorted(lowered)
    signed = ";".join(names)
    text = "\n".join(
        [
            method.upper(),
            _uri_encode(unquote(parts.path) or "/", safe="/"),
            canonical_query(parts.query),
            "".join(f"{name}:{lowered[name]}\n" for name in names),
            signed,
            payload_hash,
        ]
    )
    return text, signed


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: Credentials,
    region: str = REGION,
    service: str = "s3",
) -> str:
    """The `Authorization` header value (AWS Signature Version 4) for a request whose `headers` include `host` and
    `x-amz-date`; every header given is signed."""
    amz_date = next(value for name, value in headers.items() if name.lower() == "x-amz-date")
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    request, signed = canonical_request(method, url, headers, payload_hash)
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(
        signing_key(credentials.secret_key, date, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


def signed_headers(
    method: str,
    url: str,
    credentials: Credentials | None,
    payload_hash: str = EMPTY_SHA256,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to send with a request: `Host` as signed, the body's SHA-256 and, with credentials, the time and
    the signature. The Host header is set explicitly so that the one sent is the one signed."""
    headers = {"Host": urlsplit(url).netloc, "x-amz-content-sha256": payload_hash}
    if credentials is None:
        return headers
    headers["x-amz-date"] = (now or datetime.now(UTC)).strftime(AMZ_DATE)
    headers["Authorization"] = authorization(method, url, headers, payload_hash, credentials)
    return headers


def endpoint_from_env(env: Mapping[str, str] = os.environ) -> str:
    endpoint = env.get(S3_ENDPOINT_ENV, "").rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise StageError(
            f"{S3_ENDPOINT_ENV} is not set to the pipeline's S3 gateway (http://HOST:PORT); "
            "the pipeline must be S3-enabled (input.pfs.s3, s3Out)"
        )
    return endpoint


def _tag(element: ElementTree.Element, name: str) -> str | None:
    for child in element.iter():
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text
    return None


def list_keys(
    endpoint: str, bucket: str, session: requests.Session | None = None, credentials: Credentials | None = None
) -> Iterator[str]:
    """Every object key in `bucket`, following the gateway's pages."""
    http = session or requests.Session()
    marker = ""
    while True:
        url = f"{endpoint}/{bucket}" + (f"?marker={_uri_encode(marker)}" if marker else "")
        response = http.get(url, headers=signed_headers("GET", url, credentials), timeout=TIMEOUT)
        _check(response, f"list s3://{bucket}")
        root = ElementTree.fromstring(response.content)
        keys = [child.text or "" for child in root.iter() if child.tag.rsplit("}", 1)[-1] == "Key"]
        yield from keys
        if (_tag(root, "IsTruncated") or "false").lower() != "true" or not keys:
            return
        marker = _tag(root, "NextMarker") or keys[-1]


def download_bucket(endpoint: str, bucket: str, target: Path, credentials: Credentials | None = None) -> list[str]:
    """Copy every object of `bucket` under `target` (created); returns the keys."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with requests.Session() as http:
        keys = [key for key in list_keys(endpoint, bucket, http, credentials) if key and not key.endswith("/")]
        for key in keys:
            path = target / key
            if target.resolve() not in path.resolve().parents:
                raise StageError(f"s3://{bucket}/{key} would land outside {target}")
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"{endpoint}/{bucket}/{_uri_encode(key, safe='/')}"
            with http.get(
                url, headers=signed_headers("GET", url, credentials), stream=True, timeout=TIMEOUT
            ) as response:
                _check(response, f"get s3://{bucket}/{key}")
                with open(path, "wb") as out:
                    for chunk in response.iter_content(1 << 20):
                        out.write(chunk)
    if not keys:
        raise StageError(f"s3://{bucket} at {endpoint} is empty: nothing to train on")
    return keys


def upload_folder(endpoint: str, source: Path, bucket: str, credentials: Credentials | None = None) -> list[str]:
    """Put every file under `source` into `bucket` with its relative path as key; returns the keys."""
    source = Path(source)
    keys = []
    with requests.Session() as http:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = path.relative_to(source).as_posix()
            url = f"{endpoint}/{bucket}/{_uri_encode(key, safe='/')}"
            headers = signed_headers("PUT", url, credentials, payload_hash=sha256_file(path))
            with open(path, "rb") as body:
                response = http.put(url, data=body, headers=headers, timeout=TIMEOUT)
            _check(response, f"put s3://{bucket}/{key}")
            keys.append(key)
    return keys


def _check(response: requests.Response, what: str) -> None:
    if response.status_code >= 300:
        message = ""
        try:
            message = _tag(ElementTree.fromstring(response.content), "Message") or ""
        except ElementTree.ParseError:
            message = response.text[:200]
        raise StageError(f"S3 gateway refused to {what}: HTTP {response.status_code} {message}".rstrip())
