"""`localpach`: the project's CLI for the local mode, with pachctl's verbs and tables.

    localpach put-file raw_data data.csv -f data.csv     version a CSV (checked first)
    localpach run [--watch]                              bring every pipeline up to date
    localpach list repo | list job | list file REPO      look at the state (pachctl 2.12's tables)
    localpach list pipeline | inspect pipeline NAME      specs, state and last job
    localpach list datum JOB                             each datum's state and why it failed
    localpach inspect commit build@master                provenance of a model, and its model card
    localpach wait commit build@master                   wait until the pipelines have caught up
    localpach serve                                      serve the latest build on 127.0.0.1
    localpach demo                                       the whole tutorial on the vendored data

pachctl 2.12's verb-noun forms (`list job`, `inspect commit`, ...) and the 1.x forms (`list-job`,
`inspect-commit`, ...) are the same commands; `--raw` (2.x) and `--json` both print JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from localpach import DEFAULT_STATE_DIR, STATE_ENV_VAR, __version__
from localpach.errors import LocalPachError, UsageError
from localpach.pfs import DEFAULT_BRANCH, normalize_path
from pipelines.contract import MODEL_NAME, SERVING_PORT

EXIT_FAILED_JOBS = 3
EXIT_INTERRUPTED = 130
EXIT_TIMEOUT = 124

# pachctl 2.x spells commands as two words (`pachctl list job`); each maps to the 1.x-style subcommand.
VERB_NOUN = {
    ("create", "repo"): "create-repo", ("put", "file"): "put-file", ("delete", "file"): "delete-file",
    ("list", "repo"): "list-repo", ("list", "commit"): "list-commit", ("list", "file"): "list-file",
    ("get", "file"): "get-file", ("inspect", "commit"): "inspect-commit", ("wait", "commit"): "wait-commit",
    ("list", "job"): "list-job", ("inspect", "job"): "inspect-job", ("list", "pipeline"): "list-pipeline",
    ("inspect", "pipeline"): "inspect-pipeline", ("list", "datum"): "list-datum",
}  # fmt: skip


def join_verb_noun(argv: Sequence[str]) -> list[str]:
    """`[--state DIR] list job ...` -> `[--state DIR] list-job ...`; anything else unchanged."""
    args = list(argv)
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] == "--state" else 1
    if index + 1 < len(args) and (args[index], args[index + 1]) in VERB_NOUN:
        args[index : index + 2] = [VERB_NOUN[(args[index], args[index + 1])]]
    return args


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 220
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _warn(problems: list[str]) -> None:
    """Damaged records a listing skipped: one line each on stderr, after the output they are missing from."""
    console = _console(stderr=True)
    for problem in problems:
        console.print(f"[yellow]warning:[/] {_escape(problem)}", soft_wrap=True)


def state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state or os.environ.get(STATE_ENV_VAR) or DEFAULT_STATE_DIR)


def parse_ref(text: str) -> tuple[str, str | None, str | None]:
    """`repo`, `repo@ref`, `repo@ref:path` or `repo:path` -> (repo, ref, path)."""
    path: str | None = None
    if ":" in text:
        text, path = text.split(":", 1)
    repo, _, ref = text.partition("@")
    if not repo:
        raise LocalPachError(f"expected REPO[@BRANCH|COMMIT], got {text!r}")
    return repo, ref or None, path


# ------------------------------------------------------------------------------------------------ commands


def cmd_create_repo(args: argparse.Namespace) -> int:
    from localpach.data import create_repo

    created = create_repo(state_dir(args), args.name, args.description or "")
    _console().print(f"created repo {args.name}" if created else f"repo {args.name} already exists")
    return 0


def cmd_put_file(args: argparse.Namespace) -> int:
    from localpach import humanize
    from localpach.data import put_file

    repo, branch, path = parse_ref(args.repo)
    path = args.path or path
    source = Path(args.file)
    console = _console()
    result = put_file(
        state_dir(args),
        repo,
        path or source.name,
        source,
        branch=branch or DEFAULT_BRANCH,
        overwrite=args.overwrite,
        wait=not args.no_wait,
        on_wait=lambda message: _console(stderr=True).print(f"[yellow]{message}[/]"),
    )
    if result.created_repo:
        console.print(f"created repo {repo}")
    if result.commit is None:
        console.print(f"{repo}@{branch or DEFAULT_BRANCH} already has exactly this content; no new commit")
        return 0
    target = normalize_path(path or source.name)
    rows = f", {result.rows} rows" if result.rows is not None else ""
    console.print(
        f"committed {repo}@{result.commit.id} ({target}, {humanize.size(result.commit.files[target].size)}"
        f"{rows}); run `localpach run` to update the pipelines"
    )
    return 0


def cmd_delete_file(args: argparse.Namespace) -> int:
    from localpach.data import delete_file

    repo, branch, path = parse_ref(args.repo)
    path = args.path or path
    if not path:
        raise LocalPachError("delete-file needs a PATH (REPO@BRANCH:PATH or REPO PATH)")
    commit = delete_file(state_dir(args), repo, path, branch=branch or DEFAULT_BRANCH)
    _console().print(f"committed {repo}@{commit.id} (deleted {path})")
    return 0


def _pfs(args: argparse.Namespace) -> Any:
    from localpach.pfs import PFS

    pfs = PFS(state_dir(args))
    pfs.require()
    return pfs


def cmd_list_repo(args: argparse.Namespace) -> int:
    from localpach.views import repo_table

    pfs = _pfs(args)
    _console().print(repo_table(pfs, pfs.list_repos(include_system=args.all)))
    _warn(pfs.problems)
    return 0


def cmd_list_commit(args: argparse.Namespace) -> int:
    from localpach.views import commit_table

    pfs = _pfs(args)
    repo, branch, _ = parse_ref(args.repo)
    pfs.get_repo(repo)
    commits = list(pfs.history(repo, branch)) if branch else list(pfs.iter_commits(repo))
    _console().print(commit_table(commits))
    return 0


def cmd_list_file(args: argparse.Namespace) -> int:
    from localpach.views import file_table

    pfs = _pfs(args)
    repo, ref, path = parse_ref(args.repo)
    commit = pfs.resolve(repo, ref)
    _console().print(file_table(pfs.list_files(commit, args.path or path or "")))
    return 0


def cmd_get_file(args: argparse.Namespace) -> int:
    pfs = _pfs(args)
    repo, ref, path = parse_ref(args.repo)
    path = args.path or path
    if not path:
        raise LocalPachError("get-file needs REPO@REF:PATH")
    commit = pfs.resolve(repo, ref)
    from localpach.pfs import normalize_path

    key = normalize_path(path)
    if key not in commit.files:
        raise LocalPachError(f"{repo}@{commit.id}: no file {path!r}")
    if args.output:
        _check_output_file(Path(args.output))
    data = pfs.objects.read_bytes(commit.files[key].hash)
    if args.output:
        _write_output_file(Path(args.output), data)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _check_output_file(path: Path) -> None:
    """Refuse an -o that cannot become a file, naming it, before anything is read."""
    if path.is_dir():
        raise UsageError(f"-o {path}: is a folder; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"-o {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"-o {path}: not writable")


def _write_output_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise UsageError(f"-o {path}: cannot write it ({error.strerror})") from None


def cmd_inspect_commit(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import inspect_commit

    pfs = _pfs(args)
    repo, ref, _ = parse_ref(args.commit)
    if args.ref:
        ref = args.ref
    commit = pfs.resolve(repo, ref)
    if args.json:
        record = commit.to_json()
        if not args.files:
            record["files"] = len(commit.files)
        print(json.dumps(record, indent=2))
        return 0
    _console().print(inspect_commit(pfs, JobStore(pfs.state_dir), commit, model_card=not args.no_model_card))
    return 0


def cmd_list_job(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import job_table

    _pfs(args)
    store = JobStore(state_dir(args))
    jobs = store.all()
    _warn([f"{problem} (not listed)" for problem in store.problems])
    if args.pipeline:
        jobs = [job for job in jobs if job.pipeline == args.pipeline]
    if args.json:
        print(json.dumps([job.to_json() for job in jobs], indent=2))
        return 0
    _console().print(job_table(jobs))
    return 0


def cmd_inspect_job(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import inspect_job

    _pfs(args)
    store = JobStore(state_dir(args))
    job = store.get(_job_id(args.job))
    _warn(store.problems)
    if args.json:
        print(json.dumps(job.to_json(), indent=2))
        return 0
    _console().print(inspect_job(job))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore

    _pfs(args)
    store = JobStore(state_dir(args))
    job = store.get(args.job)
    path = store.log_path(job.id)
    if not path.is_file():
        raise LocalPachError(f"job {job.id} has no log (it processed no datum)")
    data = path.read_bytes()
    if args.tail:
        data = b"\n".join(data.splitlines()[-args.tail :]) + b"\n"
    sys.stdout.buffer.write(data)
    return 0


def _job_id(text: str) -> str:
    """pachctl 2.x names a job `<pipeline>@<job>`; the job ID alone is enough here."""
    return text.rpartition("@")[2]


def pipeline_infos(pfs: Any, store: Any, only: str | None = None) -> list[dict[str, Any]]:
    """Each pipeline the state knows (a branch of the spec repo): name, spec, version, created, last job."""
    from localpach.errors import NotFound
    from localpach.pfs import SPEC_REPO

    names = pfs.branches(SPEC_REPO) if pfs.find_repo(SPEC_REPO) is not None else []
    if only is not None:
        if only not in names:
            known = ", ".join(names) or "none yet (run `localpach run` first)"
            raise NotFound(f"pipeline {only!r} not found; pipelines: {known}")
        names = [only]
    jobs = store.all()  # newest first
    infos = []
    for name in names:
        history = list(pfs.history(SPEC_REPO, name))
        if not history:
            continue
        spec = json.loads(pfs.objects.read_bytes(history[0].files["spec.json"].hash))
        spec = spec.get("pipeline_spec", spec) if isinstance(spec, dict) else {}
        infos.append({
            "name": name, "spec": spec, "version": len(history), "created": history[-1].started,
            "spec_commit": history[0].id, "last_job": next((job for job in jobs if job.pipeline == name), None),
        })  # fmt: skip
    return infos


def _pipeline_json(info: dict[str, Any]) -> dict[str, Any]:
    from localpach.views import pipeline_state

    last_job = info["last_job"]
    return {
        "pipeline": {"project": {"name": "default"}, "name": info["name"]}, "version": info["version"],
        "spec_commit": info["spec_commit"], "state": pipeline_state(last_job), "created": info["created"],
        "last_job_state": last_job.state if last_job else None, "last_job": last_job.to_json() if last_job else None,
        "user_spec": info["spec"],
    }  # fmt: skip


def cmd_list_pipeline(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import pipeline_table

    pfs = _pfs(args)
    store = JobStore(state_dir(args))
    infos = pipeline_infos(pfs, store, args.pipeline)
    _warn([f"{problem} (not counted)" for problem in store.problems])
    if args.json:
        print(json.dumps([_pipeline_json(info) for info in infos], indent=2))
        return 0
    _console().print(pipeline_table(infos))
    return 0


def cmd_inspect_pipeline(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import inspect_pipeline

    pfs = _pfs(args)
    (info,) = pipeline_infos(pfs, JobStore(state_dir(args)), args.pipeline)
    if args.json:
        print(json.dumps(_pipeline_json(info), indent=2))
        return 0
    _console().print(inspect_pipeline(info))
    return 0


def cmd_list_datum(args: argparse.Namespace) -> int:
    from localpach.jobs import JobStore
    from localpach.views import datum_table

    _pfs(args)
    job = JobStore(state_dir(args)).get(_job_id(args.job))
    if args.json:
        print(json.dumps(job.datums, indent=2))
        return 0
    if not job.datums and job.datums_total:
        raise LocalPachError(f"job {job.id} was recorded before localpach kept datum records; "
                             f"`localpach inspect job {job.id}` shows its counts and reason")  # fmt: skip
    _console().print(datum_table(job))
    return 0


def commit_up_to_date(pfs: Any, store: Any, repo: str, branch: str, seen: set[str] | None = None) -> tuple[bool, str]:
    """(whether `repo@branch` holds the output of its pipeline's current inputs and spec, all upstream too; why
    not, when the reason is a failed job). An input repo is always up to date: its commits finish when made."""
    from localpach.pfs import SPEC_REPO

    seen = set() if seen is None else seen
    if repo in seen or pfs.find_repo(SPEC_REPO) is None or repo not in pfs.branches(SPEC_REPO):
        return True, ""
    seen.add(repo)
    (info,) = pipeline_infos(pfs, store, repo)
    upstream = _leaf_inputs(info["spec"].get("input") or {})
    for name, upstream_branch in upstream:
        ok, why = commit_up_to_date(pfs, store, name, upstream_branch, seen)
        if not ok:
            return False, why
    head = pfs.head_commit(repo, branch)
    wanted = {(name, pfs.head(name, upstream_branch)) for name, upstream_branch in upstream}
    wanted.add((SPEC_REPO, info["spec_commit"]))
    have = {(ref.repo, ref.id) for ref in head.direct_provenance} if head is not None else set()
    if wanted <= have:
        return True, ""
    last_job = info["last_job"]
    if last_job is not None and last_job.state in ("failure", "killed") and last_job.spec_commit == info["spec_commit"]:
        current = {(item["repo"], item["commit"]) for item in last_job.inputs} | {(SPEC_REPO, last_job.spec_commit)}
        if current == wanted:
            return (
                False,
                f"pipeline {repo}'s job {last_job.id} for the current inputs ended {last_job.state}: "
                f"{last_job.reason or 'see `localpach logs ' + last_job.id + '`'}",
            )
    return False, ""


def _leaf_inputs(spec_input: dict[str, Any]) -> list[tuple[str, str]]:
    if "pfs" in spec_input:
        return [(spec_input["pfs"]["repo"], spec_input["pfs"].get("branch") or DEFAULT_BRANCH)]
    return [leaf for key in ("cross", "union", "join", "group") for child in spec_input.get(key, [])
            for leaf in _leaf_inputs(child)]  # fmt: skip


def cmd_wait_commit(args: argparse.Namespace) -> int:
    """pachctl's `wait commit REPO@BRANCH|COMMIT`: returns once the commit exists and is finished. Locally a
    pipeline's commit appears when its job ends, so for a pipeline's branch this waits until the branch holds the
    output of the current inputs (upstream pipelines included), and fails when the job for them failed."""
    from localpach.jobs import JobStore
    from localpach.pfs import PFS
    from localpach.records import is_commit_id
    from localpach.views import inspect_commit_header

    repo, ref, _ = parse_ref(args.commit)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    pfs = PFS(state_dir(args))
    pfs.require()
    pfs.get_repo(repo)
    while True:
        store = JobStore(state_dir(args))
        commit = None
        if ref is not None and is_commit_id(ref):
            try:
                commit = pfs.get_commit(repo, ref)
            except LocalPachError:
                commit = None
        else:
            ok, why = commit_up_to_date(pfs, store, repo, ref or DEFAULT_BRANCH)
            if why:
                raise LocalPachError(why)
            commit = pfs.head_commit(repo, ref or DEFAULT_BRANCH) if ok else None
        if commit is not None:
            if args.json:
                print(json.dumps(commit.to_json() | {"files": len(commit.files)}, indent=2))
            else:
                _console().print(inspect_commit_header(commit))
            return 0
        if deadline is not None and time.monotonic() > deadline:
            _console(stderr=True).print(f"[yellow]{args.commit} did not finish within {args.timeout:g}s[/]")
            return EXIT_TIMEOUT
        time.sleep(args.interval)


def load_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The specs to run: `--specs PATH`, or the project's pipelines rendered with the local settings."""
    from localpach.specs import SETTING_FLAGS, load_spec_path, local_settings, project_specs

    if getattr(args, "specs", None):
        return load_spec_path(Path(args.specs))
    overrides = {name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name, None) is not None}
    return project_specs(local_settings(**overrides))


def _run_once(args: argparse.Namespace, specs: list[dict[str, Any]], not_retried: set, console: Any) -> Any:
    from localpach.report import ConsoleReporter
    from localpach.runner import run_pipelines

    reporter = ConsoleReporter(console, stream=args.stream)
    return run_pipelines(
        state_dir(args),
        specs,
        reporter,
        wait=not args.no_wait,
        not_retried=not_retried,
        parallelism=getattr(args, "parallelism", None) or os.cpu_count() or 1,
    )


def _print_run_summary(summary: Any, console: Any, started: float) -> None:
    from localpach import humanize

    ran = [job for job in summary.jobs if job.state == "success"]
    failed = summary.failed
    parts = [f"{len(ran)} job(s) succeeded", f"{len(failed)} failed"]
    if not summary.jobs and not failed:
        console.print(f"[green]everything is up to date[/] ({humanize.precise(time.time() - started)})")
        return
    style = "red" if failed else "green"
    console.print(f"[{style}]{', '.join(parts)}[/] in {humanize.precise(time.time() - started)}")
    for status in failed:
        console.print(f"  [red]{status.pipeline}: {status.detail}[/]")


def cmd_run(args: argparse.Namespace) -> int:
    from localpach.pfs import PFS

    console = _console()
    specs = load_specs(args)
    source = args.specs or "the project's pipelines (pipelines.all_pipelines, local settings)"
    names = ", ".join(spec.get("pipeline", {}).get("name", "?") for spec in specs)
    console.print(f"[dim]state {state_dir(args)} · {len(specs)} pipeline(s) from {source}: {names}[/]")
    not_retried: set = set()
    started = time.time()
    summary = _run_once(args, specs, not_retried, console)
    _print_run_summary(summary, console, started)
    if not args.watch:
        return 0 if summary.ok else EXIT_FAILED_JOBS
    pfs = PFS(state_dir(args))

    def head_or_problem(repo: str, branch: str) -> str | None:
        try:
            return pfs.head(repo, branch)
        except LocalPachError as error:  # a damaged branch record: the next pass names it; keep watching
            return error.message

    def fingerprint() -> tuple:
        return tuple(
            (repo.name, branch, head_or_problem(repo.name, branch))
            for repo in pfs.list_repos()
            for branch in pfs.branches(repo.name)
        )

    console.print(f"[dim]watching {state_dir(args)} for new commits every {args.interval:g}s (Ctrl-C stops)[/]")
    seen = fingerprint()
    try:
        while True:
            time.sleep(args.interval)
            current = fingerprint()
            if current == seen:
                continue
            started = time.time()
            summary = _run_once(args, specs, not_retried, console)
            _print_run_summary(summary, console, started)
            seen = fingerprint()
    except KeyboardInterrupt:
        console.print("stopped watching")
        return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    from localpach.fsck import fsck

    return fsck(state_dir(args), fix=args.fix, wait=not args.no_wait, out=print)


def cmd_serve(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from localpach import serve
    from localpach.pfs import PFS

    console = _console()
    if not args.host.strip():
        raise UsageError("--host is empty; give an address such as 127.0.0.1 (0.0.0.0: every interface)")
    pfs = PFS(state_dir(args))
    if args.commit:  # pinned; refused by name when it failed the gate or does not verify
        commit = pfs.resolve(serve.BUILD_REPO, args.commit)
        serve.check_servable(pfs, commit)
    else:  # the newest build that may be served; the ones skipped on the way are named
        warn = _console(stderr=True)
        commit = serve.latest_build(pfs, on_refused=lambda why: warn.print(f"[yellow]{escape(why)}[/]"))
    bundle = serve.checkout(pfs, commit)
    port = args.port or _free_port(serve, args.host)
    _check_port_free(args.host, port)
    base = f"http://{args.host}:{port}"
    console.print(f"serving {escape(serve.describe(serve.model_summary(pfs, commit)))} from {bundle}")
    console.print(f"model {MODEL_NAME} on {base}  (Ctrl-C stops)")
    console.print(f"[dim]try: {serve.curl_command(base)}[/]")
    process = serve.start_server(bundle, args.host, port)
    try:
        return process.wait()
    except KeyboardInterrupt:
        serve.stop_server(process)
        return 0


def _free_port(serve: Any, host: str) -> int:
    try:
        return serve.free_port(host)
    except OSError as error:
        raise UsageError(f"--host {host}: cannot listen there ({error.strerror or error})") from None


def _check_port_free(host: str, port: int) -> None:
    """A busy port or an address this machine does not have: one line, before anything is printed or started."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from localpach.demo import DemoOptions, run_demo
    from localpach.specs import SETTING_FLAGS

    overrides = {name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name, None) is not None}
    options = DemoOptions(
        directory=Path(args.dir) if args.dir else None,
        sample=Path(args.sample) if args.sample else None,
        remove_rows=args.remove_rows,
        stream=args.stream,
        settings=overrides,
    )
    return run_demo(options, _console())


# ------------------------------------------------------------------------------------------------ parser


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, written as a user types it (never `None` or `False`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or any(action.default is skip for skip in (None, False))
            or action.default == argparse.SUPPRESS
        ):
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)".strip()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0 picks a free one), got {value}")
    return value


MIN_WATCH_INTERVAL_S = 0.1


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _interval(text: str) -> float:
    try:
        value = _finite_float(text)
    except argparse.ArgumentTypeError:
        value = math.nan
    if not value >= MIN_WATCH_INTERVAL_S:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds, at least {MIN_WATCH_INTERVAL_S:g}, got {text!r}"
        )
    return value


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(
            f"must be at least 1, got {value}" if least == 1 else f"must be {least} or more, got {value}"
        )
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pipeline settings (PipelineSettings fields; unset: `run` uses their defaults, `demo` its own configuration)"
    )
    helps = {
        "sample_size": "rows split keeps (default: all; the tutorial's --sample_size was 2000)",
        "test_fraction": "share of rows held out for evaluation",
        "seed": "random seed for sampling and splitting",
        "epochs": "training epochs",
        "batch_size": "training batch size",
        "learning_rate": "optimizer learning rate",
        "embedding_dim": "word embedding size (default: the stage's, 128)",
        "hidden_dim": "recurrent state size (default: the stage's, 256)",
        "architecture": "model architecture (default or tutorial)",
        "min_rouge_l": "quality gate: build also refuses a model below this ROUGE-L",
        "incremental": "the incremental chain: split one datum per raw file, a vocabulary reduce, encoding per "
        "shard, train updating its previous model (pipelines/incremental.py); the default, except with --trainer "
        "tfjob; --no-incremental: the tutorial's five whole-data steps",
        "full_retrain": "with --incremental: every train job starts from scratch (stages train --full)",
        "beat_baseline": "build even a model that does not beat the best extractive baseline (refused by default)",
        "trainer": "pipeline (train in the step itself, default) or tfjob (the step launches the TFJob's replicas: "
        "here, local processes)",
        "train_workers": "with --trainer tfjob: data-parallel training workers (MultiWorkerMirroredStrategy)",
    }
    import dataclasses

    from localpach.specs import SETTING_FLAGS, PipelineSettings

    defaults = {field.name: field.default for field in dataclasses.fields(PipelineSettings)}
    for name, kind in SETTING_FLAGS.items():
        if name == "incremental":  # on by default (off with --trainer tfjob): --no-incremental runs the classic chain
            group.add_argument(
                "--incremental",
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=helps.get(name),
            )
            continue
        if kind is bool and name != "beat_baseline":  # off by default: the flag turns it on
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=helps.get(name),
            )
            continue
        if kind is bool:  # an on-by-default gate: the flag turns it off
            group.add_argument(
                "--allow-below-baseline",
                dest=name,
                action="store_const",
                const=False,
                default=None,
                help=helps.get(name),
            )
            continue
        text = helps.get(name, "")
        default = defaults.get(name, dataclasses.MISSING)
        if "default" not in text and default not in (None, dataclasses.MISSING):
            text += f" (default for run: {default})"
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_finite_float if kind is float else kind,
            default=None,
            help=text,
        )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"state directory (default: ${STATE_ENV_VAR} or ./{DEFAULT_STATE_DIR})",
    )
    parser = argparse.ArgumentParser(
        prog="localpach",
        description="Pachyderm's semantics on local folders: versioned repos, pipelines, jobs and provenance, "
        "running the project's pipeline specs on this machine.",
        formatter_class=HelpFormatter,
        epilog="Start with `localpach demo`, or: put-file -> run -> list-job -> inspect-commit build@master -> serve.",
    )
    parser.add_argument("--version", action="version", version=f"localpach {__version__}")
    parser.add_argument(
        "--state",
        metavar="DIR",
        default=None,
        help=f"state directory (default: ${STATE_ENV_VAR} or ./{DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, formatter_class=HelpFormatter
        )
        command.set_defaults(handler=handler)
        return command

    p = add("create-repo", cmd_create_repo, "create an input repo")
    p.add_argument("name", help="repo name: letters, digits, '_' and '-'")
    p.add_argument("-d", "--description", help="a line shown by list-repo (default: none)")

    p = add(
        "put-file",
        cmd_put_file,
        "commit a local CSV file into an input repo (checked first; refused files leave the repo unchanged)",
    )
    p.add_argument("repo", metavar="REPO[@BRANCH][:PATH]", help="target repo, e.g. raw_data or raw_data@master")
    p.add_argument("path", metavar="PATH", nargs="?", help="path inside the repo (default: the file's name)")
    p.add_argument("-f", "--file", required=True, help="local file to put")
    p.add_argument("-o", "--overwrite", action="store_true", help="replace the file if the path already exists")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")

    p = add("delete-file", cmd_delete_file, "commit an input repo without a file (or a directory)")
    p.add_argument("repo", metavar="REPO[@BRANCH][:PATH]", help="the input repo (branch default: master)")
    p.add_argument("path", metavar="PATH", nargs="?", help="file or directory to delete (or give it after ':')")

    p = add("list-repo", cmd_list_repo, "list repos with their size and head commit")
    p.add_argument("--all", action="store_true", help="include the __spec__ system repo")

    p = add("list-commit", cmd_list_commit, "list the commits of a repo, newest first")
    p.add_argument("repo", metavar="REPO[@BRANCH]", help="a repo (every branch) or one branch of it")

    p = add("list-file", cmd_list_file, "list the files of a commit (default: the branch head)")
    p.add_argument("repo", metavar="REPO[@BRANCH|COMMIT][:PATH]", help="the commit (default: the master head)")
    p.add_argument("path", metavar="PATH", nargs="?", help="directory or file inside the commit (default: the root)")

    p = add("get-file", cmd_get_file, "print (or save) one file of a commit")
    p.add_argument("repo", metavar="REPO[@BRANCH|COMMIT]:PATH", help="the file (branch default: master)")
    p.add_argument("path", metavar="PATH", nargs="?", help="the file's path, if not given after ':'")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")

    p = add("inspect-commit", cmd_inspect_commit, "show a commit and its full provenance chain")
    p.add_argument("commit", metavar="REPO[@BRANCH|COMMIT]", help="the commit (default: the master head)")
    p.add_argument("ref", metavar="COMMIT", nargs="?", help="commit ID or branch (pachctl 1.x style)")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the commit record as JSON")
    p.add_argument("--files", action="store_true", help="with --raw: include the file list")
    p.add_argument("--no-model-card", action="store_true", help="do not print a bundle's MODEL_CARD.md")

    p = add(
        "wait-commit",
        cmd_wait_commit,
        "wait until a commit is finished: for a pipeline's branch, until it holds "
        "the output of the current inputs (`wait commit`)",
    )
    p.add_argument("commit", metavar="REPO[@BRANCH|COMMIT]")
    p.add_argument(
        "--timeout",
        type=_interval,
        default=None,
        help="give up after this many seconds (exit 124; default: wait as long as it takes)",
    )
    p.add_argument("--interval", type=_interval, default=0.5, help="seconds between checks")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the commit record as JSON")

    p = add("list-job", cmd_list_job, "list jobs, newest first (state, duration, datums, bytes in/out)")
    p.add_argument("-p", "--pipeline", help="only this pipeline's jobs (default: every pipeline)")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the job records as JSON")

    p = add("inspect-job", cmd_inspect_job, "show a job: inputs, datums, reason and log tail")
    p.add_argument("job", metavar="JOB_ID|PIPELINE@JOB_ID", help="a job ID from list-job")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the job record as JSON")

    p = add("list-pipeline", cmd_list_pipeline, "list pipelines: version, input, state / last job (`list pipeline`)")
    p.add_argument("pipeline", nargs="?", help="only this pipeline (default: every pipeline)")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the pipelines as JSON")

    p = add("inspect-pipeline", cmd_inspect_pipeline, "show a pipeline: spec, state and last job (`inspect pipeline`)")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the pipeline as JSON")

    p = add("list-datum", cmd_list_datum, "list a job's datums: state, time and why one failed (`list datum`)")
    p.add_argument("job", metavar="JOB_ID|PIPELINE@JOB_ID")
    p.add_argument("--raw", "--json", dest="json", action="store_true", help="print the datum records as JSON")

    p = add("logs", cmd_logs, "print a job's stage output")
    p.add_argument("job", metavar="JOB_ID", help="a job ID from list-job")
    p.add_argument("--tail", type=_non_negative_int, default=0, help="only the last N lines (0: all)")

    p = add("run", cmd_run, "run every pipeline whose inputs or spec changed, in dependency order")
    p.add_argument("--watch", action="store_true", help="keep running: re-run when new data is committed")
    p.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        help=f"seconds between checks with --watch (at least {MIN_WATCH_INTERVAL_S:g})",
    )
    p.add_argument("--stream", action="store_true", help="print every line of stage output")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")
    p.add_argument(
        "--specs",
        metavar="PATH",
        help="run these Pachyderm spec JSON files instead of the project's (default: the project's)",
    )
    p.add_argument(
        "--parallelism",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run up to N datums of a job at once, as Pachyderm's workers (default: the CPU count); "
        "the outputs are the same for every N",
    )
    _add_settings(p)

    p = add(
        "fsck",
        cmd_fsck,
        "check the state for damaged or missing records and objects (like `pachctl fsck`); "
        "exit 1 while a problem remains",
    )
    p.add_argument(
        "-f",
        "--fix",
        action="store_true",
        help="apply the safe fixes: move unreadable job and datum records and commit records no branch "
        "reaches to lost+found, quarantine altered objects, rewrite a damaged state marker, mark a job a "
        "killed runner left running as killed and remove its work folder, point an unreadable branch "
        "record at its newest intact commit; readable branches are never re-pointed",
    )
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")

    p = add("serve", cmd_serve, "serve the newest build that passed the gate (or --commit) on 127.0.0.1")
    p.add_argument("--port", type=_port, default=SERVING_PORT, help="HTTP port, 1 to 65535 (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--commit", help="pin a build commit ID (default: the newest build that passed the gate)")

    p = add("demo", cmd_demo, "the whole tutorial on the vendored data: put, run, serve, request, update, re-run")
    p.add_argument("--dir", help="demo directory (default: runs/demo-<timestamp>)")
    p.add_argument("--sample", help="CSV (or .csv.gz) to use instead of data/github_pr_issues_large.csv.gz")
    p.add_argument(
        "--remove-rows",
        type=_positive_int,
        default=5,
        help="rows the update step removes (tutorial step 9); fewer than the sample's rows",
    )
    p.add_argument("--stream", action="store_true", help="print every line of stage output")
    _add_settings(p)
    return parser


# Commands that write the state (they create it when it does not exist yet).
STATE_WRITERS = {"create-repo", "put-file", "delete-file", "run", "fsck"}


def check_state_dir(path: Path, command: str) -> None:
    """A --state that cannot be a state folder (a file, under a file, somewhere unwritable such as /proc): one
    line naming it, before any work starts."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--state {path}: is a file, not a folder")
    else:
        existing = next((parent for parent in path.absolute().parents if parent.exists()), None)
        if existing is not None and not existing.is_dir():
            raise UsageError(f"--state {path}: {existing} is a file, so no folder can be made under it")
    if command not in STATE_WRITERS:
        return  # readers say "no state" themselves when it does not exist
    # Where the state is (or its nearest existing parent): a folder made and removed there proves it writable
    # (os.access says yes to root even on /proc), and a refused command still creates nothing.
    existing = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), Path("/"))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".localpach-probe-", dir=existing))
    except OSError as error:
        raise UsageError(f"--state {path}: cannot write there ({error.strerror or error})") from None


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_verb_noun(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _terminate)  # stop like Ctrl-C: the running job is recorded as killed
    # Ctrl-C / SIGINT always stops: a shell starts background jobs (`localpach serve &`, a CI step run with `&`) with
    # SIGINT ignored, and Python then leaves it ignored, so `kill -INT` would not stop the server it started.
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        command = getattr(args, "command", None)
        if command is not None and command != "demo":
            check_state_dir(state_dir(args), command)
        return int(args.handler(args) or 0)
    except LocalPachError as error:
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(error.message)}", soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        _console(stderr=True).print("[yellow]interrupted; nothing partial was committed[/]")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


if __name__ == "__main__":
    raise SystemExit(main())
