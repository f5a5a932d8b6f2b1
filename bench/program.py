"""Benchmark 5: time for the Pulumi program to evaluate under mocks, per stack (via tests/infra/harness.py)."""

import importlib
import sys
import time

from bench.common import REPO, Section

STACKS = ("minikube", "gke-gpu")
HARNESS = REPO / "tests" / "infra" / "harness.py"


def run(quick: bool) -> Section:
    section = Section(
        "Pulumi program evaluation under mocks",
        ["stack", "first evaluation s (imports included)", "evaluation s", "resources"],
    )
    if not HARNESS.exists():
        section.notes.append("not measured: tests/infra/harness.py does not exist yet.")
        return section
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:  # imported as the package module it is: its dataclasses need it registered in sys.modules
        harness = importlib.import_module("tests.infra.harness")
    except Exception as error:  # the harness is another part's code: report, don't crash the whole bench
        section.notes.append(f"not measured: importing tests/infra/harness.py failed: {error!r}")
        return section
    for stack in STACKS:
        repeats = 1 if quick else 3
        times, count = [], 0
        try:
            for _ in range(repeats):
                started = time.perf_counter()
                count = len(harness.run_program(stack))
                times.append(time.perf_counter() - started)
        except Exception as error:  # likewise: a failing program is a finding, reported in the table
            section.rows.append([stack, "failed", "-", repr(error)[:120]])
            continue
        section.rows.append([stack, f"{times[0]:.2f}", f"{min(times):.2f} (best of {repeats})", count])
    section.notes.append(
        "`tests/infra/harness.py` `run_program(stack)`: the real `__main__.py` under `pulumi.runtime.set_mocks`, "
        "in this process; the first evaluation of the first stack also imports the program's modules."
    )
    return section
