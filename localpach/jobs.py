"""Job records: one per pipeline per input commit set, as `pachctl list job` shows them.

A job is identified for skipping purposes by its key: the pipeline, the spec commit and the exact input commits.
A successful job with the same key means there is nothing to do; a failed or killed one is retried by the next
run with a new job ID. Stage output is kept per job in `logs/<job id>.log`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from localpach.errors import NotFound
from localpach.fsutil import atomic_write_json, read_json

RUNNING, SUCCESS, FAILURE, KILLED = "running", "success", "failure", "killed"
JobKey = tuple[str, str, tuple[tuple[str, str, str], ...]]


@dataclass
class Job:
    id: str
    pipeline: str
    spec_commit: str
    inputs: list[dict[str, str]]  # [{"name", "repo", "commit"}]
    output_commit: str
    started: float
    state: str = RUNNING
    finished: float | None = None
    datums_total: int = 0
    datums_processed: int = 0
    datums_skipped: int = 0
    datums_failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""
    log_tail: list[str] = field(default_factory=list)
    step_pid: int | None = None
    restart: int = 0

    @property
    def key(self) -> JobKey:
        return (
            self.pipeline,
            self.spec_commit,
            tuple(sorted((item["name"], item["repo"], item["commit"]) for item in self.inputs)),
        )

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> "Job":
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


class JobStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "jobs"
        self.logs = state_dir / "logs"

    def save(self, job: Job) -> None:
        atomic_write_json(self.dir / f"{job.id}.json", job.to_json())

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    def get(self, job_id: str) -> Job:
        if re.fullmatch(r"[0-9a-f]{32}", job_id):
            path = self.dir / f"{job_id}.json"
            if path.is_file():
                return Job.from_json(read_json(path))
        elif re.fullmatch(r"[0-9a-f]{4,31}", job_id):
            matches = [job for job in self.all() if job.id.startswith(job_id)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFound(f"job ID prefix {job_id} is ambiguous")
        raise NotFound(f"job {job_id} not found")

    def all(self) -> list[Job]:
        """Every job, newest first (the order `list-job` prints)."""
        if not self.dir.is_dir():
            return []
        jobs = [Job.from_json(read_json(path)) for path in self.dir.glob("*.json")]
        return sorted(jobs, key=lambda job: job.started, reverse=True)

    def by_key(self) -> dict[JobKey, list[Job]]:
        index: dict[JobKey, list[Job]] = {}
        for job in self.all():
            index.setdefault(job.key, []).append(job)
        return index

    def running(self) -> Iterator[Job]:
        return (job for job in self.all() if job.state == RUNNING)
