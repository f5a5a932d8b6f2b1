"""Shared helpers: where the model comes from, machine facts, timing and the markdown table."""

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
DATA_SET = REPO / "data" / "github_pr_issues_large.csv.gz"  # the vendored data set (data/README.md)
RUNS_BUNDLE = REPO / "runs" / "bundle"
BIN = Path(sys.executable).parent


@dataclass
class Section:
    """One benchmark's outcome: a table, notes, target verdicts and plots, rendered into results.md."""

    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[object]] = field(default_factory=list)  # each cell written as str(cell)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, str]] = field(default_factory=list)  # (target, measured, "met"/"not met")
    plots: list[Path] = field(default_factory=list)

    def table(self) -> str:
        if not self.header:
            return ""
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Model:
    """The bundle the benchmarks use, and a sentence saying where it came from."""

    path: Path
    origin: str


def pick_model(scratch: Path, quick: bool, given: Path | None = None) -> Model:
    """The bundle given with `--model`; else the trained `runs/bundle` when present (a realistic model), else a tiny
    one (loop overhead only)."""
    if given is not None:
        return Model(given.resolve(), f"`{given}` (given with --model)")
    if not quick and (RUNS_BUNDLE / "model.json").exists():
        return Model(RUNS_BUNDLE, "runs/bundle (trained on the vendored data, see its model.json)")
    return Model(tiny_model(scratch / "tiny"), f"a tiny model: `stages` on {TINY_ROWS} rows of the data set")


TINY_ROWS = 60


def tiny_model(work: Path) -> Path:
    """A real, tiny bundle in seconds, made the way users make one: the `stages` CLI on the vendored data set."""

    def stages(*arguments: str) -> None:
        done = subprocess.run([str(BIN / "stages"), *arguments], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"stages {arguments[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")

    stages(
        "split",
        "--input",
        str(DATA_SET.parent),
        "--output",
        str(work / "split"),
        "--sample-size",
        str(TINY_ROWS),
        "--test-fraction",
        "0.2",
        "--seed",
        "1",
    )
    stages(
        "pre_process",
        "--input",
        str(work / "split"),
        "--output",
        str(work / "pre_process"),
        "--body-vocab-size",
        "120",
        "--body-length",
        "24",
        "--title-vocab-size",
        "60",
        "--title-length",
        "8",
    )
    stages(
        "train",
        "--input",
        str(work / "pre_process"),
        "--output",
        str(work / "train"),
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--embedding-dim",
        "16",
        "--hidden-dim",
        "16",
        "--dropout",
        "0",
        "--learning-rate",
        "0.01",
    )
    stages(
        "build",
        "--input",
        str(work / "train"),
        "--input",
        str(work / "split"),
        "--output",
        str(work / "bundle"),
        "--allow-below-baseline",
    )  # a tiny model times the decoding loop; it is not meant to beat the baseline
    return work / "bundle"


def sample_bodies(count: int) -> list[str]:
    """`count` issue bodies from the vendored data set, repeated as needed."""
    from issue_titles.csvio import BODY, read_issue_file

    bodies = [issue.body for issue in read_issue_file(DATA_SET, require=(BODY,))]
    if not bodies:
        raise ValueError(f"no bodies in {DATA_SET}")
    return [bodies[index % len(bodies)] for index in range(count)]


def machine_facts() -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, memory, versions, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "?"
    facts = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu}, {os.cpu_count()} cores visible (shared), {memory} RAM",
        "os": platform.platform(),
        "python": platform.python_version(),
        "git commit": _git_commit(),
    }
    for package in ("tensorflow", "tensorflow-cpu", "keras", "mlserver", "pulumi", "issue-titles"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return facts


def _git_commit() -> str:
    """Short HEAD, marked when tracked files differ from it (the numbers are then of code not yet committed)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD"], timeout=10).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head + " + uncommitted changes" if changed else head) or "?"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of few samples is the max, which is what it honestly is)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def scratch_dir(keep: Path | None = None) -> AbstractContextManager[str]:
    """A temporary working folder, removed afterwards; or `keep`, an empty or new folder the run's states stay in
    (e.g. the incremental benchmark's state A, to try updates on it without another full training)."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="bench-")
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        raise SystemExit(f"bench: --keep-scratch {keep} is not empty: a run would mix its states with older ones")
    return nullcontext(str(keep))
