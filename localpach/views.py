"""The tables and detail views the CLI prints, shaped like pachctl's (list-repo, list-job, list-file, ...)."""

from __future__ import annotations

import time
from typing import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from localpach import humanize
from localpach.errors import CorruptState
from localpach.jobs import FAILURE, KILLED, RUNNING, SUCCESS, Job, JobStore
from localpach.pfs import PFS, SPEC_REPO, Commit, FileInfo, Repo

STATE_STYLE = {SUCCESS: "green", FAILURE: "bold red", KILLED: "yellow", RUNNING: "cyan"}


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "OUTPUT COMMIT", "COMMIT", "NAME", "PARENT"))
    return table


def repo_table(pfs: PFS, repos: Iterable[Repo]) -> Table:
    table = _table("NAME", "CREATED", "SIZE (MASTER)", "HEAD", "KIND")
    now = time.time()
    for repo in repos:
        if repo.kind == "spec":
            table.add_row(repo.name, humanize.ago(repo.created, now), humanize.size(0),
                          f"{len(pfs.branches(repo.name))} pipeline spec(s)", repo.kind)
            continue
        try:
            head = pfs.head_commit(repo.name)
        except CorruptState as error:  # list the repo, name the damage once below the table
            pfs.problems.append(error.message)
            table.add_row(repo.name, humanize.ago(repo.created, now), "?", "(damaged: see below)", repo.kind)
            continue
        size = head.size_bytes if head else 0
        head_text = head.id if head else "-"
        table.add_row(repo.name, humanize.ago(repo.created, now), humanize.size(size), head_text, repo.kind)
    return table


def progress(job: Job) -> str:
    """Pachyderm's datum progress: processed + skipped / total."""
    return f"{job.datums_processed} + {job.datums_skipped} / {job.datums_total}"


def job_table(jobs: Iterable[Job], highlight: set[str] | None = None) -> Table:
    table = _table("ID", "OUTPUT COMMIT", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE")
    now = time.time()
    for job in jobs:
        style = "bold" if highlight and job.id in highlight else None
        table.add_row(
            job.id,
            f"{job.pipeline}@{job.output_commit}",
            humanize.ago(job.started, now),
            humanize.duration(job.duration) if job.finished else "-",
            str(job.restart),
            progress(job),
            humanize.size(job.bytes_in),
            humanize.size(job.bytes_out),
            Text(job.state, style=STATE_STYLE.get(job.state, "")),
            style=style,
        )
    return table


def file_table(entries: Iterable[FileInfo]) -> Table:
    table = _table("NAME", "TYPE", "SIZE")
    for entry in entries:
        table.add_row(entry.path, entry.type, humanize.size(entry.size))
    return table


def commit_table(commits: Iterable[Commit]) -> Table:
    table = _table("REPO", "BRANCH", "COMMIT", "PARENT", "STARTED", "DURATION", "SIZE", "ORIGIN")
    now = time.time()
    for commit in commits:
        table.add_row(
            commit.repo,
            commit.branch,
            commit.id,
            commit.parent or "-",
            humanize.ago(commit.started, now),
            humanize.duration(commit.finished - commit.started),
            humanize.size(commit.size_bytes),
            commit.origin if not commit.job else f"job {commit.job[:12]}",
        )
    return table


def provenance_table(pfs: PFS, commit: Commit) -> Table:
    """Every commit `commit` derives from: data commits first (nearest first), then the spec versions."""
    table = _table("REPO", "COMMIT", "BRANCH / PIPELINE", "DIRECT", "CONTENT")
    direct = {(ref.repo, ref.id) for ref in commit.direct_provenance}
    data = [ref for ref in commit.provenance if ref.repo != SPEC_REPO]
    specs = [ref for ref in commit.provenance if ref.repo == SPEC_REPO]
    for ref in [*data, *specs]:
        try:
            upstream = pfs.get_commit(ref.repo, ref.id)
            content = f"sha256:{upstream.tree_hash[:16]}  {humanize.size(upstream.size_bytes)}"
        except Exception:  # a record that is gone should not hide the rest of the chain
            content = "(record missing)"
        table.add_row(ref.repo, ref.id, ref.branch, "yes" if (ref.repo, ref.id) in direct else "", content)
    return table


def inspect_commit(pfs: PFS, jobs: JobStore, commit: Commit) -> Group:
    now = time.time()
    lines = [
        ("Commit", f"{commit.repo}@{commit.id}"),
        ("Branch", commit.branch),
        ("Parent", commit.parent or "-"),
        ("Origin", commit.origin),
        ("Started", humanize.ago(commit.started, now)),
        ("Finished", humanize.ago(commit.finished, now)),
        ("Size", f"{humanize.size(commit.size_bytes)} in {len(commit.files)} file(s)"),
        ("Content", f"sha256:{commit.tree_hash}"),
    ]
    if commit.description:
        lines.append(("Description", commit.description))
    if commit.job:
        try:
            job = jobs.get(commit.job)
            lines.append(("Job", f"{job.id} ({job.state}, {humanize.precise(job.duration)}, {progress(job)} datums)"))
        except Exception:
            lines.append(("Job", commit.job))
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    for label, value in lines:
        header.add_row(f"{label}:", value)
    parts: list = [header]
    if commit.provenance:
        parts += [Text(""), Text("Provenance:", style="bold"), provenance_table(pfs, commit)]
    else:
        parts.append(Text("Provenance: none (data put by a user)" if commit.origin == "user" else "Provenance: none"))
    parts += model_lineage(pfs, commit)
    return Group(*parts)


def model_lineage(pfs: PFS, commit: Commit) -> list:
    """A train output's lineage.json (a build's provenance.json carries the same): full training or update, and
    the chain of models it started from back to the last full training."""
    import json

    lineage = None
    for path, key in (("lineage.json", None), ("provenance.json", "lineage")):
        obj = commit.files.get(path)
        if obj is None:
            continue
        try:
            data = json.loads(pfs.objects.read_bytes(obj.hash))
        except Exception:  # a damaged file should not hide the rest of the commit
            continue
        lineage = data.get(key) if key else data
        if isinstance(lineage, dict):
            break
    if not isinstance(lineage, dict) or "mode" not in lineage:
        return []
    text = [f"  {lineage['mode']} training of {lineage.get('rows', '?')} rows: {lineage.get('reason', '')}"]
    if lineage["mode"] == "update":
        text.append(f"  fine-tuned on {lineage.get('new_rows')} new + {lineage.get('replay_rows')} replayed rows")
    for step in reversed(lineage.get("chain") or []):
        text.append(f"  <- started from train@{step.get('commit') or '?'} ({step.get('mode')} training, weights "
                    f"sha256:{str(step.get('weights_sha256', ''))[:16]})")
    return [Text(""), Text("Model lineage:", style="bold"), Text("\n".join(text))]


def inspect_job(job: Job, spec_branch_hint: str = "") -> Group:
    now = time.time()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("ID:", job.id)
    grid.add_row("Pipeline:", job.pipeline)
    grid.add_row("State:", Text(job.state, style=STATE_STYLE.get(job.state, "")))
    grid.add_row("Started:", humanize.ago(job.started, now))
    grid.add_row("Duration:", humanize.precise(job.duration))
    grid.add_row("Output commit:", f"{job.pipeline}@{job.output_commit}")
    grid.add_row("Spec commit:", f"{SPEC_REPO}@{job.spec_commit}")
    for item in job.inputs:
        grid.add_row(f"Input {item['name']}:", f"{item['repo']}@{item['commit']}")
    grid.add_row("Datums:", f"{progress(job)} (processed + skipped / total), {job.datums_failed} failed")
    grid.add_row("Data:", f"in {humanize.size(job.bytes_in)}, out {humanize.size(job.bytes_out)}")
    parts: list = [grid]
    if job.reason:
        parts += [Text(""), Text(f"Reason: {job.reason}", style="red" if job.state == FAILURE else "")]
    if job.log_tail:
        parts += [Text(""), Text("Log tail:", style="bold"), Text("\n".join(f"  {line}" for line in job.log_tail))]
    return Group(*parts)
