"""`localpach`: the project's CLI for the local mode, with pachctl's verbs and tables.

    localpach put-file raw_data data.csv -f data.csv     version a CSV (checked first)
    localpach run [--watch]                              bring every pipeline up to date
    localpach list-repo | list-job | list-file REPO      look at the state
    localpach inspect-commit build@master                provenance of a model
    localpach serve                                      serve the latest build on 127.0.0.1
    localpach demo                                       the whole tutorial on the vendored data
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from localpach import DEFAULT_STATE_DIR, STATE_ENV_VAR, __version__
from localpach.errors import LocalPachError
from localpach.pfs import DEFAULT_BRANCH, normalize_path

EXIT_FAILED_JOBS = 3
EXIT_INTERRUPTED = 130


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
    data = pfs.objects.read_bytes(commit.files[key].hash)
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


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
    _console().print(inspect_commit(pfs, JobStore(pfs.state_dir), commit))
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
    job = store.get(args.job)
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
        data = b"\n".join(data.splitlines()[-args.tail:]) + b"\n"
    sys.stdout.buffer.write(data)
    return 0


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
    return run_pipelines(state_dir(args), specs, reporter, wait=not args.no_wait, not_retried=not_retried,
                         parallelism=getattr(args, "parallelism", None) or os.cpu_count() or 1)


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
    pfs = PFS(state_dir(args))
    if args.commit:  # pinned; refused by name when it failed the gate or does not verify
        commit = pfs.resolve(serve.BUILD_REPO, args.commit)
        serve.check_servable(pfs, commit)
    else:  # the newest build that may be served; the ones skipped on the way are named
        warn = _console(stderr=True)
        commit = serve.latest_build(pfs, on_refused=lambda why: warn.print(f"[yellow]{escape(why)}[/]"))
    bundle = serve.checkout(pfs, commit)
    port = args.port or serve.free_port(args.host)
    base = f"http://{args.host}:{port}"
    console.print(f"serving {escape(serve.describe(serve.model_summary(pfs, commit)))} from {bundle}")
    console.print(f"model {serve.MODEL_NAME} on {base}  (Ctrl-C stops)")
    console.print(f"[dim]try: {serve.curl_command(base)}[/]")
    process = serve.start_server(bundle, args.host, port)
    try:
        return process.wait()
    except KeyboardInterrupt:
        serve.stop_server(process)
        return 0


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


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pipeline settings (PipelineSettings fields; unset: `run` uses their defaults, `demo` its own configuration)")
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
                       "shard, train updating its previous model (pipelines/incremental.py)",
        "full_retrain": "with --incremental: every train job starts from scratch (stages train --full)",
        "beat_baseline": "build even a model that does not beat the best extractive baseline (refused by default)",
    }
    from localpach.specs import SETTING_FLAGS

    for name, kind in SETTING_FLAGS.items():
        if kind is bool and name != "beat_baseline":  # off by default: the flag turns it on
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_const", const=True,
                               default=None, help=helps.get(name))
            continue
        if kind is bool:  # an on-by-default gate: the flag turns it off
            group.add_argument("--allow-below-baseline", dest=name, action="store_const", const=False, default=None,
                               help=helps.get(name))
            continue
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=helps.get(name))


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with `localpach demo`, or: put-file -> run -> list-job -> inspect-commit build@master -> serve.",
    )
    parser.add_argument("--version", action="version", version=f"localpach {__version__}")
    parser.add_argument(
        "--state", metavar="DIR", default=None,
        help=f"state directory (default: ${STATE_ENV_VAR} or ./{DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    p = add("create-repo", cmd_create_repo, "create an input repo")
    p.add_argument("name")
    p.add_argument("-d", "--description")

    p = add("put-file", cmd_put_file, "commit a local CSV file into an input repo (checked first; refused files "
            "leave the repo unchanged)")
    p.add_argument("repo", metavar="REPO[@BRANCH][:PATH]", help="target repo, e.g. raw_data or raw_data@master")
    p.add_argument("path", metavar="PATH", nargs="?", help="path inside the repo (default: the file's name)")
    p.add_argument("-f", "--file", required=True, help="local file to put")
    p.add_argument("-o", "--overwrite", action="store_true", help="replace the file if the path already exists")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")

    p = add("delete-file", cmd_delete_file, "commit an input repo without a file (or a directory)")
    p.add_argument("repo", metavar="REPO[@BRANCH][:PATH]")
    p.add_argument("path", metavar="PATH", nargs="?")

    p = add("list-repo", cmd_list_repo, "list repos with their size and head commit")
    p.add_argument("--all", action="store_true", help="include the __spec__ system repo")

    p = add("list-commit", cmd_list_commit, "list the commits of a repo, newest first")
    p.add_argument("repo", metavar="REPO[@BRANCH]")

    p = add("list-file", cmd_list_file, "list the files of a commit (default: the branch head)")
    p.add_argument("repo", metavar="REPO[@BRANCH|COMMIT][:PATH]")
    p.add_argument("path", metavar="PATH", nargs="?", help="directory or file inside the commit")

    p = add("get-file", cmd_get_file, "print (or save) one file of a commit")
    p.add_argument("repo", metavar="REPO[@BRANCH|COMMIT]:PATH")
    p.add_argument("path", metavar="PATH", nargs="?")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add("inspect-commit", cmd_inspect_commit, "show a commit and its full provenance chain")
    p.add_argument("commit", metavar="REPO[@BRANCH|COMMIT]")
    p.add_argument("ref", metavar="COMMIT", nargs="?", help="commit ID or branch (pachctl 1.x style)")
    p.add_argument("--json", action="store_true", help="print the commit record as JSON")
    p.add_argument("--files", action="store_true", help="with --json: include the file list")

    p = add("list-job", cmd_list_job, "list jobs, newest first (state, duration, datums, bytes in/out)")
    p.add_argument("-p", "--pipeline", help="only this pipeline's jobs")
    p.add_argument("--json", action="store_true")

    p = add("inspect-job", cmd_inspect_job, "show a job: inputs, datums, reason and log tail")
    p.add_argument("job", metavar="JOB_ID")
    p.add_argument("--json", action="store_true")

    p = add("logs", cmd_logs, "print a job's stage output")
    p.add_argument("job", metavar="JOB_ID")
    p.add_argument("--tail", type=int, default=0, help="only the last N lines")

    p = add("run", cmd_run, "run every pipeline whose inputs or spec changed, in dependency order")
    p.add_argument("--watch", action="store_true", help="keep running: re-run when new data is committed")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between checks with --watch")
    p.add_argument("--stream", action="store_true", help="print every line of stage output")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")
    p.add_argument("--specs", metavar="PATH", help="run these Pachyderm spec JSON files instead of the project's")
    p.add_argument("--parallelism", type=_positive_count, default=None, metavar="N",
                   help="run up to N datums of a job at once, as Pachyderm's workers (default: the CPU count); "
                        "the outputs are the same for every N")
    _add_settings(p)

    p = add("fsck", cmd_fsck, "check the state for damaged or missing records and objects (like `pachctl fsck`); "
            "exit 1 while a problem remains")
    p.add_argument("-f", "--fix", action="store_true",
                   help="apply the safe fixes: move unreadable job and datum records and commit records no branch "
                   "reaches to lost+found, quarantine altered objects, rewrite a damaged state marker; branches are "
                   "never re-pointed")
    p.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another run holds the state")

    p = add("serve", cmd_serve, "serve the newest build that passed the gate (or --commit) on 127.0.0.1")
    p.add_argument("--port", type=int, default=9000, help="HTTP port (0 picks a free one; default 9000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--commit", help="pin a build commit ID instead of the newest build that passed the gate")

    p = add("demo", cmd_demo, "the whole tutorial on the vendored data: put, run, serve, request, update, re-run")
    p.add_argument("--dir", help="demo directory (default: runs/demo-<timestamp>)")
    p.add_argument("--sample", help="CSV (or .csv.gz) to use instead of data/github_pr_issues_large.csv.gz")
    p.add_argument("--remove-rows", type=int, default=5, help="rows the update step removes (tutorial step 9)")
    p.add_argument("--stream", action="store_true", help="print every line of stage output")
    _add_settings(p)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)  # stop like Ctrl-C: the running job is recorded as killed
    # Ctrl-C / SIGINT always stops: a shell starts background jobs (`localpach serve &`, a CI step run with `&`) with
    # SIGINT ignored, and Python then leaves it ignored, so `kill -INT` would not stop the server it started.
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
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
