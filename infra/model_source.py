"""Which exported model to serve: the newest `export` commit whose model passed the quality gate, read from pachd.

`pulumi preview` calls this while the program runs (not from a dynamic resource: a resource's outputs are unknown
during a preview, and the point is that the preview shows the concrete image a merge would deploy). It reaches pachd
through infra/pachd.py (`connect`, the pachyderm_sdk Client; the same seam as the pipeline provider's) and reads
the SDK's PFS API only: `list_commit`, `inspect_commit`, `get_file`.

An export commit is selected only when all of this holds, newest first (`list_commit` answers newest first):
- its job finished without error: Pachyderm 2.x closes the downstream commits of a failed job (a `build` that
  refused a model below the gate) with `error` set, so a model that failed the gate never has a usable export commit;
- its `image.json` names an image that was pushed, to the stack's `serving:imageRepo`, tagged with the commit's job
  ID (in Pachyderm 2.x an output commit's ID is its job ID: one global ID per commit set);
- the `build` commit it came from holds a `provenance.json` whose sha256 is the one `image.json` recorded, and that
  says the quality gate passed.
Anything else is refused by name (`export@<id>: <why>`) and the next older commit is considered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from infra import pachd
from infra.pachd import REFUSED, TOKEN_CONFIG, PachydermError, is_not_found, is_unreachable, pachd_status
from pipelines.contract import IMAGE_RECORD, PROVENANCE

EXPORT_REPO = "export"
BUILD_REPO = "build"
DATA_REPO = "raw_data"
PROJECT = "default"
SCAN_LIMIT = 20  # export commits looked at, newest first
_WALK_LIMIT = 16  # commits visited on the way from export back to raw_data


class PachdUnreachable(PachydermError):
    """pachd did not answer: the caller keeps the last deployed model and says so."""


class ModelRefused(Exception):
    """An export commit that must not be served; the message starts with `export@<commit>`."""


@dataclass(frozen=True)
class ExportedModel:
    """One servable model: its image and where it came from."""

    job_id: str
    image: str
    export_commit: str
    build_commit: str | None = None
    data_commit: str | None = None
    digest: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "export_commit": f"{EXPORT_REPO}@{self.export_commit}",
            "build_commit": f"{BUILD_REPO}@{self.build_commit}" if self.build_commit else None,
            "data_commit": f"{DATA_REPO}@{self.data_commit}" if self.data_commit else None,
            "digest": self.digest,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Selection:
    model: ExportedModel | None
    refused: list[str] = field(default_factory=list)  # "export@<id>: <why>", newest first


def _metrics(provenance: dict[str, Any]) -> dict[str, Any]:
    """ROUGE-L of the model and of the best extractive baseline on the test split, as build recorded them."""
    recorded = provenance.get("metrics")
    metrics: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    out: dict[str, Any] = {}
    for system in ("model", "lead_baseline"):
        value = (metrics.get(system) or {}).get("rouge_l") if isinstance(metrics.get(system), dict) else None
        if isinstance(value, (int, float)):
            out[f"{system}_rouge_l"] = round(float(value), 4)
    if isinstance(metrics.get("test_rows"), int):
        out["test_rows"] = metrics["test_rows"]
    return out


def check_export(
    commit_id: str,
    record: Any,
    provenance_bytes: bytes | None,
    image_repo: str,
    build_commit: str | None = None,
    data_commit: str | None = None,
) -> ExportedModel:
    """The model of export@`commit_id`, or ModelRefused naming the commit and the reason. No I/O."""
    name = f"{EXPORT_REPO}@{commit_id}"
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        raise ModelRefused(f"{name}: {IMAGE_RECORD} names no image")
    image = record["image"]
    expected = f"{image_repo}:{commit_id}"
    if record.get("pushed") is not True:
        why = record.get("reason") or f"{IMAGE_RECORD} says it was not pushed"
        raise ModelRefused(f"{name}: image {image} is missing from the registry ({why})")
    if image != expected:
        raise ModelRefused(
            f"{name}: image {image} is not {expected} (another repository, or not tagged with the export job ID)"
        )
    if provenance_bytes is None:
        raise ModelRefused(f"{name}: provenance does not verify: the build commit it came from has no {PROVENANCE}")
    actual = hashlib.sha256(provenance_bytes).hexdigest()
    if record.get("provenance_sha256") != actual:
        raise ModelRefused(
            f"{name}: provenance does not verify: {IMAGE_RECORD} records sha256 "
            f"{str(record.get('provenance_sha256'))[:12]}…, build's {PROVENANCE} has {actual[:12]}…"
        )
    try:
        provenance = json.loads(provenance_bytes)
    except ValueError:
        raise ModelRefused(f"{name}: provenance does not verify: {PROVENANCE} is not JSON") from None
    gate = provenance.get("quality_gate") if isinstance(provenance, dict) else None
    if not isinstance(gate, dict) or gate.get("passed") is not True:
        raise ModelRefused(f"{name}: the model did not pass the quality gate ({PROVENANCE}: quality_gate={gate!r})")
    return ExportedModel(
        job_id=commit_id,
        image=image,
        export_commit=commit_id,
        build_commit=build_commit,
        data_commit=data_commit,
        digest=record.get("digest"),
        metrics=_metrics(provenance),
    )


# --- pachd ------------------------------------------------------------------------------------------------------------


def _repo(name: str) -> Any:
    from pachyderm_sdk.api import pfs

    return pfs.Repo(name=name, type="user", project=pfs.Project(name=PROJECT))


def _read_file(client: Any, commit: Any, path: str) -> bytes | None:
    """A file's bytes, or None when pachd says it is not there."""
    from pachyderm_sdk.api import pfs

    try:
        return b"".join(chunk.value for chunk in client.pfs.get_file(file=pfs.File(commit=commit, path=path)))
    except Exception as error:
        status = pachd_status(error)
        if status is None or is_unreachable(status):
            raise
        return None


def _upstream(client: Any, export: Any) -> tuple[Any | None, Any | None]:
    """(the build commit, the raw_data commit) an export commit derives from, following direct provenance."""
    build = data = None
    queue = list(export.direct_provenance)
    seen: set[tuple[str, str]] = set()
    while queue and len(seen) < _WALK_LIMIT and data is None:
        commit = queue.pop(0)
        key = (commit.repo.name, commit.id)
        if key in seen:
            continue
        seen.add(key)
        if commit.repo.name == BUILD_REPO and build is None:
            build = commit
        if commit.repo.name == DATA_REPO:
            data = commit
            break
        if getattr(commit.repo, "type", "user") == "spec":
            continue
        queue += client.pfs.inspect_commit(commit=commit).direct_provenance
    return build, data


def _unreachable(error: BaseException, address: str) -> PachdUnreachable | None:
    status = pachd_status(error)
    if status is None or not is_unreachable(status):
        return None
    return PachdUnreachable(
        f"cannot reach pachd at {address} to read the newest `{EXPORT_REPO}` commit ({status[0]}: {status[1]})"
    )


def newest_exported_model(
    address: str, image_repo: str, limit: int = SCAN_LIMIT, auth_token: str | None = None
) -> Selection:
    """The newest export commit that passed the gate and verifies; the ones refused on the way, by name.

    `auth_token` is pachd's root token (pachd's auth is on; infra/pachd.py, connect). Raises
    PachdUnreachable when pachd does not answer, PachydermError for any other pachd failure (a refused token
    included, with the config key that sets it, never the token).
    """
    try:
        client = pachd.connect(address, auth_token)
        refused: list[str] = []
        try:
            infos = list(client.pfs.list_commit(repo=_repo(EXPORT_REPO), number=limit))
        except Exception as error:
            status = pachd_status(error)
            if status is not None and not is_unreachable(status) and is_not_found(*status):
                return Selection(None, [f"repo {EXPORT_REPO} does not exist yet (the pipelines are not created)"])
            raise
        for info in infos:
            commit = info.commit
            if info.error:
                refused.append(f"{EXPORT_REPO}@{commit.id}: its job failed ({info.error.strip()})")
                continue
            if info.finished is None or info.finished.year <= 1970:  # unset: the job is still running
                refused.append(f"{EXPORT_REPO}@{commit.id}: its job has not finished")
                continue
            raw = _read_file(client, commit, f"/{IMAGE_RECORD}")
            try:
                record = json.loads(raw) if raw is not None else None
            except ValueError:
                record = None
            build, data = _upstream(client, info)
            provenance = _read_file(client, build, f"/{PROVENANCE}") if build is not None else None
            try:
                return Selection(
                    check_export(
                        commit.id,
                        record,
                        provenance,
                        image_repo,
                        build.id if build else None,
                        data.id if data else None,
                    ),
                    refused,
                )
            except ModelRefused as refusal:
                refused.append(str(refusal))
        return Selection(None, refused)
    except Exception as error:
        unreachable = _unreachable(error, address)
        if unreachable is not None:
            raise unreachable from None
        status = pachd_status(error)
        if status is not None and status[0] in REFUSED:
            raise PachydermError(
                f"reading the `{EXPORT_REPO}` commits from pachd at {address} failed: {status[1]} [{status[0]}]. "
                f"Pachyderm's auth is on: set the root token pachd was deployed with, "
                f"`pulumi config set --secret {TOKEN_CONFIG} <token>`"
            ) from None
        if status is not None:
            raise PachydermError(
                f"reading the `{EXPORT_REPO}` commits from pachd at {address} failed: {status[1]} [{status[0]}]"
            ) from None
        raise
