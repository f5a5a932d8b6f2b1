"""Benchmark 5: time for the Pulumi program to evaluate under mocks, per stack (infra/render.py, the offline render)."""

import time

from bench.common import Section

STACKS = ("minikube", "gke-gpu")


def run(quick: bool) -> Section:
    from infra import render  # the one way to evaluate the program under mocks: the product's offline render

    section = Section(
        "Pulumi program evaluation under mocks",
        ["stack", "first evaluation s (imports included)", "evaluation s", "resources"],
    )
    for stack in STACKS:
        repeats = 1 if quick else 3
        times, count = [], 0
        try:
            for _ in range(repeats):
                started = time.perf_counter()
                count = len(render.run_program(stack))
                times.append(time.perf_counter() - started)
        except Exception as error:  # a failing program is a finding, reported in the table
            section.rows.append([stack, "failed", "-", repr(error)[:120]])
            continue
        section.rows.append([stack, f"{times[0]:.2f}", f"{min(times):.2f} (best of {repeats})", str(count)])
    section.notes.append(
        "`infra/render.py` `run_program(stack)`: the real `__main__.py` under `pulumi.runtime.set_mocks`, "
        "in this process; the first evaluation of the first stack also imports the program's modules."
    )
    return section
