"""`stages split`: read every CSV of the input, drop bad rows (counted), shuffle, cut into train and test.

Whole repositories are held out as well (`heldout.csv`): a user runs the model on their own repository, which it
never saw, so the score that matters is on repositories absent from training, not only on rows of the same
repositories (`test.csv`). The choice is fixed here so every run is scored on the same ones.
"""

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import read_issue_folder, write_issues
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json
from issue_titles.limits import TRAINING_RANGES

# Several ecosystems and body styles, about 9% of the vendored data set's rows (data/README.md has the table):
HELDOUT_REPOSITORIES: tuple[str, ...] = (
    "getsentry/sentry-python",  # Python SDK; plain prose bodies
    "open-telemetry/opentelemetry-collector",  # Go; "#### Description" / "Link to tracking issue" template
    "streamlit/streamlit",  # Python + TypeScript; "## Describe your changes" template
    "ollama/ollama",  # Go, ML serving; short commit-style bodies
    "onnx/onnx",  # C++ / Python, ML format; "### Description" / "### Motivation and Context" template
    "biomejs/biome",  # Rust + TypeScript toolchain
)
_REPOSITORY = re.compile(r"^https?://(?:www\.)?github\.com/([^/\s]+/[^/\s#?]+)", re.I)


def repository_of(issue_url: str) -> str | None:
    """`owner/name` of a github.com issue, pull request or commit URL (lower-cased); None for anything else."""
    match = _REPOSITORY.match(issue_url.strip())
    return match.group(1).lower() if match else None


@dataclass(frozen=True)
class SplitSettings:
    sample_size: int | None = None
    test_fraction: float = 0.1
    seed: int = 42
    heldout_repositories: tuple[str, ...] = HELDOUT_REPOSITORIES

    def __post_init__(self) -> None:
        least, _ = TRAINING_RANGES["sample_size"]
        if self.sample_size is not None and self.sample_size < least:
            raise StageError(f"--sample-size must be at least {least}, got {self.sample_size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise StageError(f"--test-fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")


def split_counts(rows: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) sizes; both at least 1."""
    test = min(max(1, round(rows * test_fraction)), rows - 1)
    return rows - test, test


def run_split(input_dir: Path, output_dir: Path, settings: SplitSettings) -> dict:
    issues, read_report = read_issue_folder(input_dir)
    if len(issues) < 2:
        raise StageError(
            f"only {len(issues)} usable row(s) after skipping bad ones {dict(read_report.skipped)}; need at least 2",
            path=input_dir,
        )
    random.Random(settings.seed).shuffle(issues)
    if settings.sample_size is not None:
        issues = issues[: settings.sample_size]
    held = {name.lower() for name in settings.heldout_repositories}
    heldout = [issue for issue in issues if repository_of(issue.issue_url) in held]
    issues = [issue for issue in issues if repository_of(issue.issue_url) not in held]
    if len(issues) < 2:
        raise StageError(
            f"only {len(issues)} row(s) left once the held-out repositories are set aside; need at least 2",
            path=input_dir,
        )
    train_rows, test_rows = split_counts(len(issues), settings.test_fraction)
    report = read_report.as_dict() | {
        "sampled_rows": len(issues) + len(heldout),
        "train_rows": train_rows,
        "test_rows": test_rows,
        "heldout_rows": len(heldout),
        "heldout_repositories": dict(sorted(Counter(repository_of(issue.issue_url) for issue in heldout).items())),
        "seed": settings.seed,
        "sample_size": settings.sample_size,
        "test_fraction": settings.test_fraction,
    }
    with atomic_output_dir(output_dir, step="split", inputs=[input_dir]) as staging:
        write_issues(staging / "train.csv", issues[:train_rows])
        write_issues(staging / "test.csv", issues[train_rows:])
        write_issues(staging / "heldout.csv", heldout)
        write_json(staging / "report.json", report)
    return report
