"""`stages split`: read every CSV of the input, drop bad rows (counted), shuffle, cut into train and test."""

import random
from dataclasses import dataclass
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import read_issue_folder, write_issues
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json


@dataclass(frozen=True)
class SplitSettings:
    sample_size: int | None = None
    test_fraction: float = 0.1
    seed: int = 42

    def __post_init__(self) -> None:
        if self.sample_size is not None and self.sample_size < 2:
            raise StageError(f"--sample-size must be at least 2, got {self.sample_size}")
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
    train_rows, test_rows = split_counts(len(issues), settings.test_fraction)
    report = read_report.as_dict() | {
        "sampled_rows": len(issues),
        "train_rows": train_rows,
        "test_rows": test_rows,
        "seed": settings.seed,
        "sample_size": settings.sample_size,
        "test_fraction": settings.test_fraction,
    }
    with atomic_output_dir(output_dir, step="split", inputs=[input_dir]) as staging:
        write_issues(staging / "train.csv", issues[:train_rows])
        write_issues(staging / "test.csv", issues[train_rows:])
        write_json(staging / "report.json", report)
    return report
