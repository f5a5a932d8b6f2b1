"""The demo's last step: the served model changes after the data update, shown as old and new side by side.

The local mirror of a cluster rollout: the newest build that passed the gate replaces the one being served, and
both are shown with their provenance (build commit, job, data commit, ROUGE-L) and their answer to the same request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from localpach import serve
from localpach.pfs import PFS, Commit


@contextmanager
def serving(pfs: PFS, commit: Commit, log_path: Path) -> Iterator[str]:
    """Serve `commit` on a free port for the duration of the block; yields the base URL."""
    bundle = serve.checkout(pfs, commit)
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = serve.start_server(bundle, "127.0.0.1", port, log=log)
        try:
            serve.wait_ready(base, process)
            yield base
        finally:
            serve.stop_server(process)


def ask(base: str) -> str:
    """The title the model at `base` gives the tutorial's issue."""
    answer = serve.predict_v1(base, serve.TUTORIAL_PAYLOAD)
    return str(answer["data"]["ndarray"][0][0])


def _rouge(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def models_table(pfs: PFS, served: list[tuple[str, Commit, str]], data_repo: str = "raw_data") -> Table:
    """One column per (label, build commit, predicted title): provenance, metrics and the answer, row by row."""
    summaries = [serve.model_summary(pfs, commit, data_repo) for _, commit, _ in served]
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for label, _, _ in served:
        table.add_column(label, overflow="fold")
    rows = [
        ("build commit", [f"build@{s['build_commit']}" for s in summaries]),
        ("job", [str(s["job"]) for s in summaries]),
        ("data commit", [f"{data_repo}@{s['data_commit']}" if s["data_commit"] else "-" for s in summaries]),
        ("ROUGE-L", [_rouge(s["rouge_l"]) for s in summaries]),
        ("baseline ROUGE-L", [_rouge(s["baseline_rouge_l"]) for s in summaries]),
        ("quality gate", ["passed" if s["gate_passed"] else "FAILED" for s in summaries]),
        ("predicted title", [escape(title) for _, _, title in served]),
    ]
    for name, values in rows:
        table.add_row(name, *values)
    return table


def show_model_change(
    console: Console, pfs: PFS, root: Path, old: Commit, old_title: str, new: Commit, data_repo: str = "raw_data"
) -> str:
    """Serve the new build, ask it the same request, print old and new side by side; returns the new title."""
    if new.id == old.id:
        console.print(f"the newest servable build is still build@{old.id}: the served model did not change")
        return old_title
    with serving(pfs, new, root / "serve-new.log") as base:
        new_title = ask(base)
        console.print(
            models_table(
                pfs,
                [("served before the update", old, old_title), ("served after the update", new, new_title)],
                data_repo,
            )
        )
        console.print(
            f"now serving {escape(serve.describe(serve.model_summary(pfs, new, data_repo), data_repo))} "
            f"on {base}; build@{old.id} is retired (pin it again with "
            f"`localpach serve --commit {old.id}`)"
        )
    return new_title
