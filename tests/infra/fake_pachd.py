"""An in-memory pachd at the SDK boundary: `client.pfs` / `client.pps` with the real stubs' method signatures.

It records every call, keeps repos and pipelines the way pachd does (a pipeline owns an output repo of its name),
answers missing or duplicate objects with the gRPC errors pachd sends, and can be told to fail the next call
(raising what the SDK raises: the grpc.RpcError, or the ConnectionError its interceptor makes of "failed to connect").
"""
from __future__ import annotations

import json
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

    def __post_init__(self) -> None:
        self.pfs = _Pfs(self)
        self.pps = _Pps(self)
        self.connections: list[str] = []

    def connect(self, address: str) -> FakePachd:
        """Stands in for infra.pachyderm_provider._connect."""
        self.connections.append(address)
        return self

    def fail_next(self, method: str, code: grpc.StatusCode, details: str) -> None:
        self.failures[method] = PachdRpcError(code, details)

    def record(self, method: str, **kwargs: Any) -> None:
        self.calls.append(Call(method, kwargs))
        if method in self.failures:
            error = self.failures.pop(method)
            if error.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in error.details():
                # pachyderm_sdk's interceptor turns this one into a ConnectionError
                raise ConnectionError("Could not connect to pachyderm instance\n") from error
            raise error

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


class _Pps:
    def __init__(self, pachd: FakePachd) -> None:
        self._pachd = pachd

    def create_pipeline_v2(self, *, create_pipeline_request_json: str = "", dry_run: bool = False,
                           update: bool = False, reprocess: bool = False) -> None:
        self._pachd.record("create_pipeline_v2", create_pipeline_request_json=create_pipeline_request_json,
                           dry_run=dry_run, update=update, reprocess=reprocess)
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

    def delete_pipeline(self, *, pipeline: Any = None, all: bool = False, force: bool = False,  # noqa: A002
                        keep_repo: bool = False, must_exist: bool = False) -> None:
        self._pachd.record("delete_pipeline", pipeline=pipeline, all=all, force=force, keep_repo=keep_repo,
                           must_exist=must_exist)
        key = _key(pipeline)
        if key not in self._pachd.pipelines:
            raise PachdRpcError(grpc.StatusCode.NOT_FOUND, f"pipeline {key[0]}/{key[1]} not found")
        del self._pachd.pipelines[key]
        if not keep_repo:
            self._pachd.repos.pop(key, None)
