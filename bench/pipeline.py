"""Benchmarks 3 and 4: the local pipeline (localpach) on a sample of the data set, and incremental re-runs.

One state folder serves both: a full run from scratch, a re-run with nothing new, then +1% rows and a re-run.
Per-step wall times and training throughput come from localpach's job table (`list-job --json`).
"""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import BIN, DATA_SET, Section, verdict
from localpach.sample import draw_sample, open_text

STEPS = ("split", "pre_process", "train", "build", "export")
# Runs a command and prints the peak RSS (KiB) of it and every descendant it waited for (the largest step).
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def localpach(state: Path, *arguments: str, peak_rss: bool = False) -> tuple[float, str, int | None]:
    """Run `localpach --state STATE ...`; returns (wall seconds, stdout, peak RSS KiB if asked). Fails loudly."""
    command = [str(BIN / "localpach"), "--state", str(state), *arguments]
    if peak_rss:
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, *command]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    rss = None
    for line in completed.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB"):
            rss = int(line.split()[1])
    return wall, completed.stdout, rss


def jobs(state: Path) -> list[dict]:
    return json.loads(localpach(state, "list-job", "--json")[1])


def append_rows(source: Path, extra_from: Path, fraction: float, target: Path) -> int:
    """Write `source` plus `fraction` of its row count taken from `extra_from` (rows not already in source)."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    wanted = max(1, round(len(body) * fraction))
    known = {row[0] for row in body}
    extra: list[list[str]] = []
    with open_text(extra_from) as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if len(row) == len(header) and row[0] not in known:
                extra.append(row)
                if len(extra) == wanted:
                    break
    with target.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body, *extra])
    return len(extra)


def run(quick: bool, scratch: Path, server_peak_rss_kb: int | None, plots_dir: Path) -> list[Section]:
    state = scratch / "pfs"
    raw = scratch / "issues.csv"
    draw_sample(DATA_SET, raw, rows=2500, seed=20240501)  # 2,500 seeded-random rows of the vendored data set
    # The tutorial's sample (2,000 rows) times the pipeline; whether such a model beats the baseline is not the
    # question here, so build's baseline gate is lifted.
    settings = ["--sample-size", "300", "--epochs", "1"] if quick else ["--sample-size", "2000"]
    settings.append("--allow-below-baseline")

    put_s, _, _ = localpach(state, "put-file", "raw_data", "issues.csv", "-f", str(raw))
    full_s, _, train_peak_kb = localpach(state, "run", *settings, peak_rss=True)
    first_jobs = {job["pipeline"]: job for job in jobs(state)}
    model_json = json.loads(localpach(state, "get-file", "train@master:model.json")[1])
    seen = {job["id"] for job in jobs(state)}
    unchanged_s, _, _ = localpach(state, "run", *settings)
    unchanged_jobs = [job for job in jobs(state) if job["id"] not in seen]
    seen |= {job["id"] for job in unchanged_jobs}

    grown = scratch / "issues-grown.csv"
    extra_source = DATA_SET
    added = append_rows(raw, extra_source, 0.01, grown)
    localpach(state, "put-file", "raw_data", "issues.csv", "-o", "-f", str(grown))
    incremental_s, _, _ = localpach(state, "run", *settings)
    incremental_jobs = [job for job in jobs(state) if job["id"] not in seen]

    training = model_json.get("training", {})
    samples = training.get("train_rows", 0) * training.get("epochs_run", 0)
    train_job_s = first_jobs["train"]["finished"] - first_jobs["train"]["started"]

    pipeline = Section("Pipeline (localpach on the demo data)", ["step", "wall s", "state"])
    pipeline.rows.append(["put-file raw_data", f"{put_s:.1f}", "-"])
    for step in STEPS:
        job = first_jobs.get(step)
        if job:
            pipeline.rows.append([step, f"{job['finished'] - job['started']:.1f}", job["state"]])
    pipeline.rows.append(["whole `localpach run`", f"{full_s:.1f}", "-"])
    pipeline.rows.append(
        [
            f"training throughput (CPU): {samples} samples ({training.get('train_rows')} rows x "
            f"{training.get('epochs_run')} epochs)",
            (
                f"{samples / train_job_s:.0f} samples/s (job) / "
                f"{samples / training['seconds']:.0f} samples/s (fit only)"
                if training.get("seconds")
                else f"{samples / train_job_s:.0f} samples/s"
            ),
            model_json.get("architecture", "?"),
        ]
    )
    pipeline.rows.append(
        ["peak RSS, largest pipeline step (training)", f"{train_peak_kb / 1024:.0f} MiB" if train_peak_kb else "?", "-"]
    )
    pipeline.rows.append(
        [
            "peak RSS, one server replica (after the serving load)",
            f"{server_peak_rss_kb / 1024:.0f} MiB" if server_peak_rss_kb else "not measured",
            "-",
        ]
    )
    described = "quick (--sample-size 300 --epochs 1)" if quick else "--sample-size 2000 (the tutorial's sample)"
    pipeline.notes.append(
        f"Settings: {described}. "
        "Step times from `localpach list-job --json`. GPU training throughput: not measured (no GPU on this machine; "
        "`stages train` uses one when TensorFlow sees it)."
    )
    pipeline.plots.append(_plot(first_jobs, plots_dir))

    incremental = Section("Incremental update (localpach)", ["run", "wall s", "ratio to full run", "jobs run"])
    incremental.rows.append(["full run from scratch", f"{full_s:.1f}", "1.00", _describe(first_jobs.values())])
    incremental.rows.append(
        [
            "unchanged data (nothing to do)",
            f"{unchanged_s:.2f}",
            f"{unchanged_s / full_s:.3f}",
            _describe(unchanged_jobs),
        ]
    )
    incremental.rows.append(
        [
            f"+1% rows ({added} appended)",
            f"{incremental_s:.1f}",
            f"{incremental_s / full_s:.2f}",
            _describe(incremental_jobs),
        ]
    )
    incremental.notes.append(
        "`split` reads raw_data with glob `/` (one datum: it samples and splits the whole file), so any new row "
        "re-runs every downstream step; the +1% re-run is a full re-train by design of the pipeline specs."
    )
    retrain = next((job for job in incremental_jobs if job["pipeline"] == "train"), None)
    if retrain:
        retrain_s = retrain["finished"] - retrain["started"]
        incremental.notes.append(
            f"Why the +1% target is not reachable here: re-training alone took {retrain_s:.1f} s, "
            f"{retrain_s / full_s:.0%} of a full run, so even free data steps would leave the re-run above 25%. "
            "Only incremental (warm-start) training could change that, and this pipeline has none: `pre_process` "
            "refits both vocabularies on the new split, so the previous weights need not fit the new ids."
        )
    incremental.targets.append(
        (
            "incremental re-run for +1% rows <= 25% of a full run",
            f"{incremental_s / full_s:.0%}",
            verdict(incremental_s / full_s <= 0.25),
        )
    )
    incremental.targets.append(("unchanged data <= 2 s", f"{unchanged_s:.2f} s", verdict(unchanged_s <= 2.0)))
    return [pipeline, incremental]


def _describe(step_jobs) -> str:
    """`3: split, train, build` (how many jobs ran, oldest first, and their states where not success)."""
    ordered = sorted(step_jobs, key=lambda job: job["started"])
    names = [job["pipeline"] + ("" if job["state"] == "success" else f" ({job['state']})") for job in ordered]
    return f"{len(names)}: {', '.join(names)}" if names else "0"


def _plot(step_jobs: dict, plots_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    path = plots_dir / "pipeline.png"
    steps = [step for step in STEPS if step in step_jobs]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.barh(steps, [step_jobs[step]["finished"] - step_jobs[step]["started"] for step in steps])
    axis.invert_yaxis()
    axis.set_xlabel("wall s")
    axis.set_title("Pipeline step wall time (demo data)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
