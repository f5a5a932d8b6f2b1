"""An in-memory pachd at the SDK boundary: `client.pfs` / `client.pps` with the real stubs' method signatures.

It records every call, keeps repos and pipelines the way pachd does (a pipeline owns an output repo of its name),
answers missing or duplicate objects with the gRPC errors pachd sends, and can be told to fail the next call
(raising what the SDK raises: the grpc.RpcError, or the ConnectionError its interceptor makes of "failed to connect").

With `required_token` set it behaves like pachd with auth active: every call needs that token (the `authn-token` the
SDK client sends), and answers pachd's own errors otherwise (pachyderm/pachyderm 2.12.x src/auth/auth.go,
ErrNotSignedIn and ErrBadToken, both codes.Unauthenticated).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc


class PachdRpcError(grpc.RpcError):
    """What the SDK raises: a grpc.RpcError with code() and details(), like grpc's _InactiveRpcError."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@dataclass
class Call:
    method: str
    kwargs: dict[str, Any]


@dataclass
class FakePachd:
    address: str = "grpc://pachd.test:30650"
    repos: dict[tuple[str, str], str] = field(default_factory=dict)  # (project, name) -> description
    pipelines: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (project, name) -> request
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, PachdRpcError] = field(default_factory=dict)  # method -> error raised by its next call
    # PFS commits, newest last per repo, and their files: what list_commit / inspect_commit / get_file read.
    commits: dict[str, list[Any]] = field(default_factory=dict)  # repo -> [pfs.CommitInfo]
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (repo, commit id, path) -> content
    required_token: str | None = None  # auth active: the root token every call must carry

    def __post_init__(self) -> None:
        self.pfs = _Pfs(self)
        self.pps = _Pps(self)
        self.connections: list[str] = []
        self.tokens: list[str | None] = []  # the auth token of each connection, in order
        self._token: str | None = None

    def connect(self, address: str, auth_token: str | None = None) -> FakePachd:
        """Stands in for infra.pachd.connect."""
        self.connections.append(address)
        self.tokens.append(auth_token)
        self._token = auth_token
        return self

    def fail_next(self, method: str, code: grpc.StatusCode, details: str) -> None:
        self.failures[method] = PachdRpcError(code, details)

    def record(self, method: str, **kwargs: Any) -> None:
        self.calls.append(Call(method, kwargs))
        if self.required_token is not None and self._token != self.required_token:
            if not self._token:
                raise PachdRpcError(grpc.StatusCode.UNAUTHENTICATED, "no authentication token (try logging in)")
            raise PachdRpcError(
                grpc.StatusCode.UNAUTHENTICATED,
                "provided auth token is corrupted or has expired (try logging in again)",
            )
        if method in self.failures:
            error = self.failures.pop(method)
            if error.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in error.details():
                # pachyderm_sdk's interceptor turns this one into a ConnectionError
                raise ConnectionError("Could not connect to pachyderm instance\n") from error
            raise error

    def add_commit(
        self,
        repo: str,
        commit_id: str,
        files: dict[str, bytes] | None = None,
        provenance: Sequence[tuple[str, str]] = (),
        error: str = "",
        finished: bool = True,
    ) -> Any:
        """A finished (or still open) commit in `repo` with its files and direct provenance [(repo, id)]."""
        from datetime import UTC, datetime

        from pachyderm_sdk.api import pfs

        def commit(name: str, id_: str) -> Any:
            return pfs.Commit(id=id_, repo=pfs.Repo(name=name, type="user", project=pfs.Project(name="default")))

        info = pfs.CommitInfo(
            commit=commit(repo, commit_id), error=error, direct_provenance=[commit(r, i) for r, i in provenance]
        )
        if finished:
            info.finished = datetime(2026, 1, 1, tzinfo=UTC)
        self.commits.setdefault(repo, []).append(info)
        for path, content in (files or {}).items():
            self.files[(repo, commit_id, path.lstrip("/"))] = content
        return info

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.kwargs for c in self.calls if c.method == method]


def _key(message: Any) -> tuple[str, str]:
    return (message.project.name if message.project else "default", message.name)


class _Pfs:
    def __init__(self, pachd: FakePachd) -> None:
        self._pachd = pachd

    def create_repo(self, *, repo: Any = None, description: str = "", update: bool = False) -> None:
        self._pachd.record("create_repo", repo=repo, description=description, update=update)
        key = _key(repo)
        if key in self._pachd.repos and not update:
            raise PachdRpcError(grpc.StatusCode.ALREADY_EXISTS, f"repo {key[0]}/{key[1]} already exists")
        self._pachd.repos[key] = description

    def inspect_repo(self, *, repo: Any = None) -> dict[str, Any]:
        self._pachd.record("inspect_repo", repo=repo)
        key = _key(repo)
        if key not in self._pachd.repos:
            raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"repo {key[0]}/{key[1]} not found")
        return {"name": key[1], "description": self._pachd.repos[key]}

    def delete_repo(self, *, repo: Any = None, force: bool = False) -> None:
        self._pachd.record("delete_repo", repo=repo, force=force)
        key = _key(repo)
        if key not in self._pachd.repos:
            raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"repo {key[0]}/{key[1]} not found")
        del self._pachd.repos[key]

    def list_commit(
        self,
        *,
        repo: Any = None,
        from_: Any = None,
        to: Any = None,
        number: int = 0,
        reverse: bool = False,
        all: bool = False,
        origin_kind: Any = None,
        started_time: Any = None,
    ) -> Iterator[Any]:
        """Newest first (pachd's order unless `reverse`), at most `number` (0: all)."""
        self._pachd.record("list_commit", repo=repo, number=number, reverse=reverse)
        if repo.name not in self._pachd.commits:
            raise PachdRpcError(grpc.StatusCode.UNKNOWN, f"repo {repo.name} not found")
        infos = list(reversed(self._pachd.commits[repo.name]))
        infos = infos[::-1] if reverse else infos
        return iter(infos[:number] if number else infos)

    def inspect_commit(self, *, commit: Any = None, wait: Any = None) -> Any:
        self._pachd.record("inspect_commit", commit=commit, wait=wait)
        for info in self._pachd.commits.get(commit.repo.name, []):
            if info.commit.id == commit.id:
                return info
        raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"commit {commit.repo.name}@{commit.id} not found")

    def get_file(self, *, file: Any = None, url: str = "", offset: int = 0, path_range: Any = None) -> Iterator[Any]:
        """The file's bytes in chunks with `.value`, like the BytesValue stream the SDK yields."""
        self._pachd.record("get_file", file=file)
        key = (file.commit.repo.name, file.commit.id, file.path.lstrip("/"))
        if key not in self._pachd.files:
            raise PachdRpcError(
                grpc.StatusCode.NOT_FOUND, f"file {file.path} not found in repo {key[0]} at commit {key[1]}"
            )
        content = self._pachd.files[key]
        return iter([_Chunk(content[i : i + 1024]) for i in range(0, max(len(content), 1), 1024)])


@dataclass
class _Chunk:
    value: bytes


class _Pps:
    def __init__(self, pachd: FakePachd) -> None:
        self._pachd = pachd

    def create_pipeline_v2(
        self,
        *,
        create_pipeline_request_json: str = "",
        dry_run: bool = False,
        update: bool = False,
        reprocess: bool = False,
    ) -> None:
        self._pachd.record(
            "create_pipeline_v2",
            create_pipeline_request_json=create_pipeline_request_json,
            dry_run=dry_run,
            update=update,
            reprocess=reprocess,
        )
        request = json.loads(create_pipeline_request_json)
        key = (request["pipeline"]["project"]["name"], request["pipeline"]["name"])
        if key in self._pachd.pipelines and not update:
            raise PachdRpcError(grpc.StatusCode.ALREADY_EXISTS, f"pipeline {key[0]}/{key[1]} already exists")
        self._pachd.pipelines[key] = request
        self._pachd.repos.setdefault(key, "")

    def inspect_pipeline(self, *, pipeline: Any = None, details: bool = False, history: int = 0) -> dict[str, Any]:
        self._pachd.record("inspect_pipeline", pipeline=pipeline, details=details)
        key = _key(pipeline)
        if key not in self._pachd.pipelines:
            raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"pipeline {key[0]}/{key[1]} not found")
        return self._pachd.pipelines[key]

    def delete_pipeline(
        self,
        *,
        pipeline: Any = None,
        all: bool = False,
        force: bool = False,
        keep_repo: bool = False,
        must_exist: bool = False,
    ) -> None:
        self._pachd.record(
            "delete_pipeline", pipeline=pipeline, all=all, force=force, keep_repo=keep_repo, must_exist=must_exist
        )
        key = _key(pipeline)
        if key not in self._pachd.pipelines:
            raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"pipeline {key[0]}/{key[1]} not found")
        del self._pachd.pipelines[key]
        if not keep_repo:
            self._pachd.repos.pop(key, None)
