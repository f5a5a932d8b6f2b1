"""The tables and detail views the CLI prints, shaped like pachctl 2.12's (list repo, list job, list file, ...).

Headers and row fields are pachyderm/pachyderm v2.12.0-rc.3's src/server/pfs/pretty/pretty.go (`RepoHeader`,
`CommitHeader`, `FileHeader`, `PrintDetailedCommitInfo`) and src/server/pps/pretty/pretty.go (`JobHeader`,
`PipelineHeader`, `DatumHeader`, `PrintJobInfo`, `PrintPipelineInfo`, `PrintDatumInfo`, `Progress`,
`ShorthandInput`). Everything lives in pachctl's `default` project here. Where localpach adds a column pachctl has
not, it comes last (`list datum`'s REASON).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from localpach import humanize
from localpach.errors import CorruptState
from localpach.jobs import FAILURE, KILLED, RUNNING, SUCCESS, Job, JobStore
from localpach.pfs import PFS, SPEC_REPO, Commit, FileInfo, Repo
from pipelines.contract import MODEL_CARD, PROVENANCE

STATE_STYLE = {SUCCESS: "green", FAILURE: "bold red", KILLED: "yellow", RUNNING: "cyan"}
PROJECT = "default"  # pachctl 2.x's project column: localpach has the one default project
# pachctl 2.12's headers (tab-separated in Go; columns here)
REPO_HEADER = ("PROJECT", "NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION")
COMMIT_HEADER = ("PROJECT", "REPO", "COMMIT", "FINISHED", "SIZE", "ORIGIN", "CREATOR", "DESCRIPTION")
FILE_HEADER = ("SIZE", "NAME")
JOB_HEADER = ("PROJECT", "PIPELINE", "ID", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE")
PIPELINE_HEADER = ("PROJECT", "NAME", "VERSION", "INPUT", "CREATED", "STATE / LAST JOB", "ALERTS", "DESCRIPTION")
DATUM_HEADER = ("ID", "FILES", "STATUS", "TIME")
JOB_REASON_LEN = 200  # pps/pretty `jobReasonLen`
ORIGIN_KIND = {"user": "USER", "job": "AUTO", "spec": "USER"}  # pfs.OriginKind as pachctl prints it


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "OUTPUT COMMIT", "COMMIT", "NAME", "PARENT", "PIPELINE"))
    return table


def repo_table(pfs: PFS, repos: Iterable[Repo]) -> Table:
    table = _table(*REPO_HEADER)
    now = time.time()
    for repo in repos:
        name = repo.name if repo.kind != "spec" else f"{repo.name}.spec"
        if repo.kind == "spec":
            table.add_row(
                PROJECT,
                name,
                humanize.ago(repo.created, now),
                humanize.size(0),
                f"{len(pfs.branches(repo.name))} pipeline spec(s)",
            )
            continue
        try:
            head = pfs.head_commit(repo.name)
        except CorruptState as error:  # list the repo, name the damage once below the table
            pfs.problems.append(error.message)
            table.add_row(PROJECT, name, humanize.ago(repo.created, now), "?", "(damaged: see below)")
            continue
        size = head.size_bytes if head else 0
        description = repo.description or ("Output repo for pipeline " + repo.name if repo.kind == "pipeline" else "")
        table.add_row(PROJECT, name, humanize.ago(repo.created, now), humanize.size(size), description)
    return table


def progress(job: Job) -> str:
    """Pachyderm's datum progress: processed + skipped / total."""
    return f"{job.datums_processed} + {job.datums_skipped} / {job.datums_total}"


def job_state(job: Job) -> Text:
    """pachctl's STATE cell: the state, ': reason' when there is one, or success with nothing to process."""
    if job.reason:
        reason = job.reason if len(job.reason) <= JOB_REASON_LEN else job.reason[:JOB_REASON_LEN] + "..."
        return Text(f"{job.state}: {reason}", style=STATE_STYLE.get(job.state, ""))
    if job.state == SUCCESS and job.datums_total and job.datums_skipped == job.datums_total:
        return Text("success: there were no datums to process", style="green")
    return Text(job.state, style=STATE_STYLE.get(job.state, ""))


def job_table(jobs: Iterable[Job], highlight: set[str] | None = None) -> Table:
    table = _table(*JOB_HEADER)
    now = time.time()
    for job in jobs:
        style = "bold" if highlight and job.id in highlight else None
        table.add_row(
            PROJECT,
            job.pipeline,
            job.id,
            humanize.ago(job.started, now),
            humanize.duration(job.duration) if job.finished else "-",
            str(job.restart),
            progress(job),
            humanize.size(job.bytes_in),
            humanize.size(job.bytes_out),
            job_state(job),
            style=style,
        )
    return table


def file_table(entries: Iterable[FileInfo]) -> Table:
    """`SIZE NAME`, as pachctl 2.12's `list file` (a directory's path ends with '/')."""
    table = _table(*FILE_HEADER)
    for entry in entries:
        name = "/" + entry.path + ("/" if entry.type == "dir" else "")
        table.add_row(humanize.size(entry.size), name)
    return table


def commit_table(commits: Iterable[Commit]) -> Table:
    table = _table(*COMMIT_HEADER)
    now = time.time()
    for commit in commits:
        table.add_row(
            PROJECT,
            commit.repo,
            commit.id,
            humanize.ago(commit.finished, now),
            humanize.size(commit.size_bytes),
            ORIGIN_KIND.get(commit.origin, commit.origin.upper()),
            "-",
            commit.description,
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


def inspect_commit_header(commit: Commit) -> Table:
    """pachctl 2.12's `PrintDetailedCommitInfo`: Commit, Description, Parent, Started, Finished, Size."""
    now = time.time()
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Commit:", f"{commit.repo}@{commit.id}")
    grid.add_row("Description:", commit.description)
    if commit.parent:
        grid.add_row("Parent:", commit.parent)
    grid.add_row("Started:", humanize.ago(commit.started, now))
    grid.add_row("Finished:", humanize.ago(commit.finished, now))
    grid.add_row("Size:", humanize.size(commit.size_bytes))
    return grid


def inspect_commit(pfs: PFS, jobs: JobStore, commit: Commit, model_card: bool = True) -> Group:
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
    if model_card and MODEL_CARD in commit.files:  # a build commit: the bundle's card, as `stages build` wrote it
        from rich.markdown import Markdown

        card = pfs.objects.read_bytes(commit.files[MODEL_CARD].hash).decode("utf-8", errors="replace")
        parts += [Text(""), Text(f"Model card ({MODEL_CARD}):", style="bold"), Markdown(card)]
    return Group(*parts)


def model_lineage(pfs: PFS, commit: Commit) -> list:
    """A train output's lineage.json (a build's provenance.json carries the same): full training or update, and
    the chain of models it started from back to the last full training."""
    import json

    lineage = None
    for path, key in (("lineage.json", None), (PROVENANCE, "lineage")):
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
        text.append(
            f"  <- started from train@{step.get('commit') or '?'} ({step.get('mode')} training, weights "
            f"sha256:{str(step.get('weights_sha256', ''))[:16]})"
        )
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


# ------------------------------------------------------------------------------------------------ pipelines, datums


def shorthand_input(spec_input: dict | None) -> str:
    """pps/pretty `ShorthandInput`: `project/repo:glob`, crosses as `(a ⨯ b)`, unions `(a ∪ b)`, joins `(a ⋈ b)`."""
    if not spec_input:
        return "none"
    if "pfs" in spec_input:
        pfs_input = spec_input["pfs"]
        return f"{pfs_input.get('project') or PROJECT}/{pfs_input.get('repo')}:{pfs_input.get('glob')}"
    for key, symbol in (("cross", " ⨯ "), ("join", " ⋈ "), ("group", " ⋈ "), ("union", " ∪ ")):
        if key in spec_input:
            return "(" + symbol.join(shorthand_input(child) for child in spec_input[key]) + ")"
    return "none"


def pipeline_state(last_job: Job | None) -> str:
    """Locally a pipeline has no workers waiting: `running` while one of its jobs runs, else `standby` (Pachyderm's
    state for a pipeline idle between jobs)."""
    return "running" if last_job is not None and last_job.state == RUNNING else "standby"


def pipeline_table(pipelines: Iterable[dict]) -> Table:
    """Rows from `cli.pipeline_infos`: {"name", "version", "spec", "created", "last_job"}."""
    table = _table(*PIPELINE_HEADER)
    now = time.time()
    for info in pipelines:
        last_job: Job | None = info["last_job"]
        table.add_row(
            PROJECT,
            info["name"],
            str(info["version"]),
            shorthand_input(info["spec"].get("input")),
            humanize.ago(info["created"], now),
            f"{pipeline_state(last_job)} / {last_job.state if last_job else '-'}",
            "*" if last_job is not None and last_job.state == FAILURE else "",
            info["spec"].get("description", ""),
        )
    return table


def inspect_pipeline(info: dict) -> Group:
    """`inspect pipeline`: pachctl's fields (PrintDetailedPipelineInfo), the last job, and the user spec as JSON."""
    import json

    now = time.time()
    spec = info["spec"]
    last_job: Job | None = info["last_job"]
    transform = spec.get("transform") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Name:", info["name"])
    if spec.get("description"):
        grid.add_row("Description:", spec["description"])
    grid.add_row("Created:", humanize.ago(info["created"], now))
    grid.add_row("State:", pipeline_state(last_job))
    grid.add_row("Reason:", last_job.reason if last_job and last_job.state == FAILURE else "")
    grid.add_row("Version:", str(info["version"]))
    grid.add_row("Parallelism Spec:", json.dumps(spec.get("parallelism_spec") or {}))
    grid.add_row("Input:", shorthand_input(spec.get("input")))
    grid.add_row("Output Branch:", spec.get("output_branch", "master"))
    grid.add_row(
        "Transform:",
        " ".join(transform.get("cmd") or []) + (f"  (image {transform['image']})" if transform.get("image") else ""),
    )
    if last_job is not None:
        grid.add_row(
            "Last Job:",
            Text(f"{last_job.id} ", style="")
            + job_state(last_job)
            + Text(f" ({humanize.ago(last_job.started, now)}, {progress(last_job)} datums)"),
        )
    else:
        grid.add_row("Last Job:", "-")
    spec_text = json.dumps(spec, indent=2)
    return Group(grid, Text(""), Text("User Spec:", style="bold"), Text("  " + spec_text.replace("\n", "\n  ")))


def datum_table(job: Job) -> Table:
    """`list datum`: pachctl 2.12's ID FILES STATUS TIME, then localpach's REASON (why a datum failed)."""
    table = _table(*DATUM_HEADER, "REASON")
    for datum in job.datums:
        seconds = datum.get("seconds")
        status = datum.get("state", "unknown")
        style = {"success": "green", "failed": "red", "skipped": "yellow"}.get(status, "")
        table.add_row(
            datum.get("id") or "-",
            ", ".join(datum.get("files") or []),
            Text("-" if status == "unknown" else status, style=style),
            humanize.duration(seconds) if isinstance(seconds, int | float) else "-",
            datum.get("reason")
            or ("not run: the job stopped before it" if status == "unknown" and job.state != RUNNING else ""),
        )
    return table
