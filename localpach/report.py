"""Console progress for runs: one line per job start and finish, datum counts, and the stage's own output.

On a terminal the latest line of stage output (epochs, batches) shows in a transient status line; with
`--stream` (or when not on a terminal, for epoch lines only) it is printed as it comes. The full output is always
in the job's log (`localpach logs JOB`).
"""

from __future__ import annotations

import re
import time

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from localpach import humanize
from localpach.datums import Datum
from localpach.jobs import SUCCESS, Job
from localpach.runner import PipelineStatus
from localpach.specs import PipelineDef
from localpach.views import progress

_PROGRESS = re.compile(r"\bepoch\b|\bloss[:=]", re.IGNORECASE)  # training progress worth a line in CI logs
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ConsoleReporter:
    def __init__(self, console: Console, stream: bool = False, tail_lines: int = 12) -> None:
        self.console = console
        self.stream = stream
        self.tail_lines = tail_lines
        self._live: Live | None = None
        self._partial = ""
        self._last_refresh = 0.0
        self._job_label = ""
        self._job_started = 0.0
        self._datum_text = ""

    # ------------------------------------------------------------------ runner callbacks

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]{escape(message)}[/]")

    def job_started(self, job: Job, pipeline: PipelineDef) -> None:
        inputs = ", ".join(f"{item['name']}@{item['commit'][:12]}" for item in job.inputs)
        self.console.print(
            f"[bold]▶ {pipeline.name}[/]  job {job.id}  {job.datums_total} datum(s)  [dim]inputs {inputs}[/]"
        )
        self._job_label = pipeline.name
        self._job_started = time.time()
        self._partial = ""
        self._datum_text = ""
        if self.console.is_terminal and not self.stream:
            self._live = Live(
                Text(""),
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def datum_started(self, job: Job, index: int, datum: Datum, skipped: bool) -> None:
        self._datum_text = f"datum {index}/{job.datums_total}"
        if skipped:
            self._print(
                f"  [dim]{self._job_label} datum {index}/{job.datums_total} ({escape(datum.describe())}) "
                "skipped: already processed[/]"
            )
        elif self.stream or job.datums_total > 1:
            self._print(f"  [dim]{self._job_label} datum {index}/{job.datums_total} ({escape(datum.describe())})[/]")
        self._status("starting")

    def output(self, job: Job, text: str) -> None:
        data = self._partial + text
        pieces = re.split(r"(\r|\n)", data)
        self._partial = pieces[-1] if pieces[-1] not in ("\r", "\n") else ""
        complete = pieces[:-1]
        line = ""
        for piece in complete:
            if piece == "\n":
                self._emit(line, final=True)
                line = ""
            elif piece == "\r":
                self._emit(line, final=False)
                line = ""
            else:
                line = piece
        if self._partial:
            self._status(self._partial)

    def job_finished(self, job: Job) -> None:
        if self._partial:
            self._emit(self._partial, final=True)
            self._partial = ""
        if self._live is not None:
            self._live.stop()
            self._live = None
        stats = (
            f"{progress(job)} datums  {humanize.precise(job.duration)}  "
            f"DL {humanize.size(job.bytes_in)}  UL {humanize.size(job.bytes_out)}"
        )
        if job.state == SUCCESS:
            self.console.print(
                f"[green]✓ {job.pipeline}[/]  job {job.id} [green]success[/]  {stats}  "
                f"→ {job.pipeline}@{job.output_commit}"
            )
            return
        self.console.print(f"[bold red]✗ {job.pipeline}[/]  job {job.id} [bold red]{job.state}[/]  {stats}")
        self.console.print(f"  [red]{escape(job.reason)}[/]")
        if job.log_tail:
            self.console.print("  [dim]log tail:[/]")
            for row in job.log_tail[-self.tail_lines :]:
                self.console.print(f"    [dim]{escape(row)}[/]")
        self.console.print(f"  [dim]full log: localpach logs {job.id}[/]")

    def pipeline_status(self, status: PipelineStatus) -> None:
        messages = {
            "up_to_date": "up to date",
            "no_input": "no input yet",
            "waiting": "waiting",
            "not_retried": "failed earlier, not retried until its inputs change",
        }
        if status.status in messages:
            detail = f" ({status.detail})" if status.detail else ""
            self.console.print(f"[dim]· {status.pipeline}: {messages[status.status]}{escape(detail)}[/]")

    # ------------------------------------------------------------------ helpers

    def _print(self, markup: str) -> None:
        if self._live is not None:
            self._live.console.print(markup)
        else:
            self.console.print(markup)

    def _emit(self, raw: str, final: bool) -> None:
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            return
        if self.stream and final:
            self._print(f"  [dim]{self._job_label} │[/] {escape(line)}")
        elif not self.console.is_terminal and final and _PROGRESS.search(line):
            self._print(f"  [dim]{self._job_label} │[/] {escape(line)}")
        self._status(line)

    def _status(self, line: str) -> None:
        if self._live is None:
            return
        now = time.time()
        if now - self._last_refresh < 0.1:
            return
        self._last_refresh = now
        elapsed = humanize.precise(now - self._job_started)
        text = Text.assemble(
            ("  ⋯ ", "cyan"),
            (f"{self._job_label} ", "bold"),
            (f"{self._datum_text} {elapsed}  ", "dim"),
            _ANSI.sub("", line).strip()[-120:],
        )
        self._live.update(text, refresh=True)
