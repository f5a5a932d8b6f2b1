"""Files in and out of a Pachyderm S3 gateway, for the TFJob replicas that train outside the pipeline's pod.

An S3-enabled pipeline (`input.pfs.s3: true`, `s3Out: true`) does not mount its input or output: its worker's
sidecar serves the job's input commit as the bucket named after the input and the output commit as the bucket `out`,
at `S3_ENDPOINT` (`http://<job's s3 service>.<namespace>:<port>`, a headless Service other pods reach), and hands the
credentials as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (pachyderm/pachyderm 2.12.x
src/server/worker/driver/driver.go, src/server/pps/server/s3g_sidecar.go). The gateway answers a request by the
first label of its Host header, so requests go to S3_ENDPOINT exactly as given, path-style.

Requests are unsigned: the gateway admits them while Pachyderm auth is off (src/server/pfs/s3/auth.go CustomAuth),
as on this project's stacks. Only the calls the replicas need: list (ListObjects v1: `marker`, and `NextMarker` on a
truncated page, as pachyderm/s2 e4a20345d93c bucket.go answers; the version Pachyderm 2.12.x's go.mod pins), get, put.
The gateway takes bodies up to 4 GiB and gives each request 5 minutes (src/server/pfs/s3/s3.go).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

import requests

from issue_titles.errors import StageError

S3_ENDPOINT_ENV = "S3_ENDPOINT"
TIMEOUT = (10, 300)  # connect, read (a large array)


def endpoint_from_env(env: Mapping[str, str] = os.environ) -> str:
    endpoint = env.get(S3_ENDPOINT_ENV, "").rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise StageError(f"{S3_ENDPOINT_ENV} is not set to the pipeline's S3 gateway (http://HOST:PORT); "
                         "the pipeline must be S3-enabled (input.pfs.s3, s3Out)")
    return endpoint


def _tag(element: ElementTree.Element, name: str) -> str | None:
    for child in element.iter():
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text
    return None


def list_keys(endpoint: str, bucket: str, session: requests.Session | None = None) -> Iterator[str]:
    """Every object key in `bucket`, following the gateway's pages."""
    http = session or requests.Session()
    marker = ""
    while True:
        response = http.get(f"{endpoint}/{bucket}", params={"marker": marker} if marker else None, timeout=TIMEOUT)
        _check(response, f"list s3://{bucket}")
        root = ElementTree.fromstring(response.content)
        keys = [child.text or "" for child in root.iter() if child.tag.rsplit("}", 1)[-1] == "Key"]
        yield from keys
        if (_tag(root, "IsTruncated") or "false").lower() != "true" or not keys:
            return
        marker = _tag(root, "NextMarker") or keys[-1]


def download_bucket(endpoint: str, bucket: str, target: Path) -> list[str]:
    """Copy every object of `bucket` under `target` (created); returns the keys."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with requests.Session() as http:
        keys = [key for key in list_keys(endpoint, bucket, http) if key and not key.endswith("/")]
        for key in keys:
            path = target / key
            if target.resolve() not in path.resolve().parents:
                raise StageError(f"s3://{bucket}/{key} would land outside {target}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with http.get(f"{endpoint}/{bucket}/{quote(key)}", stream=True, timeout=TIMEOUT) as response:
                _check(response, f"get s3://{bucket}/{key}")
                with open(path, "wb") as out:
                    for chunk in response.iter_content(1 << 20):
                        out.write(chunk)
    if not keys:
        raise StageError(f"s3://{bucket} at {endpoint} is empty: nothing to train on")
    return keys


def upload_folder(endpoint: str, source: Path, bucket: str) -> list[str]:
    """Put every file under `source` into `bucket` with its relative path as key; returns the keys."""
    source = Path(source)
    keys = []
    with requests.Session() as http:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = path.relative_to(source).as_posix()
            with open(path, "rb") as body:
                response = http.put(f"{endpoint}/{bucket}/{quote(key)}", data=body, timeout=TIMEOUT)
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
