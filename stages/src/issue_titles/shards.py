"""Data as datums: one split shard per raw file, rows assigned by a stable hash of their `issue_url`.

Pachyderm cuts `raw_data` with glob `/*`: each top-level file (or folder) is one datum, and only a new or changed
file is processed again. So the split of one file may not depend on any other file: a row goes to train / test by
a seeded hash of its `issue_url` (never by its position in a shuffle), a sampled run keeps a row when another seeded
hash falls below the sampling fraction, and the held-out repositories stay held out by repository. Adding a file
never moves an existing row.

Pachyderm 2.12 refuses a job whose datums write the same output path ("duplicate path output by different datums",
src/internal/storage/fileset/validator.go), so every datum writes only below `/pfs/out/<shard>/` (`<shard>` = the
raw file's name), marker included. Rows repeated across files are resolved where all shards meet (the vocabulary
reduce, train's assembly, build's flat view): the copy in the first shard by name wins, the others are counted.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import Issue, ReadReport, find_csv_files, read_issue_file, write_issues
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, write_json
from issue_titles.split import HELDOUT_REPOSITORIES, repository_of

SPLIT_FILES = ("train.csv", "test.csv", "heldout.csv")
SHARD_REPORT = "report.json"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def row_key(issue_url: str) -> str:
    """A row's identity: 16 hex digits of sha256 of its trimmed URL (the same row in two files has one key)."""
    return hashlib.sha256(issue_url.strip().encode("utf-8")).hexdigest()[:16]


def unit_hash(issue_url: str, purpose: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the URL, the purpose ("test", "sample") and the seed."""
    digest = hashlib.sha256(f"{seed}\0{purpose}\0{issue_url.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class ShardSettings:
    """`sample_fraction` keeps that share of every file; `sample_size` N keeps about N rows of each file (a row is
    kept when its sample hash falls below N / rows of its file) — both deterministic per row."""

    test_fraction: float = 0.1
    seed: int = 42
    sample_fraction: float | None = None
    sample_size: int | None = None
    heldout_repositories: tuple[str, ...] = HELDOUT_REPOSITORIES

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise StageError(f"--test-fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")
        if self.sample_fraction is not None and not 0.0 < self.sample_fraction <= 1.0:
            raise StageError(f"--sample-fraction must be in (0, 1], got {self.sample_fraction}")
        if self.sample_size is not None and self.sample_size < 2:
            raise StageError(f"--sample-size must be at least 2, got {self.sample_size}")


def side_of(issue: Issue, settings: ShardSettings, held: set[str]) -> str:
    """'heldout' for a held-out repository's row, else 'test' when its test hash falls below test_fraction."""
    if repository_of(issue.issue_url) in held:
        return "heldout"
    return "test" if unit_hash(issue.issue_url, "test", settings.seed) < settings.test_fraction else "train"


def shard_name(entry: Path) -> str:
    name = entry.name
    if not _SAFE.match(name):
        raise StageError(
            "a raw file's name must be letters, digits, '.', '_' or '-' (it names its split shard)", path=entry
        )
    return name


def split_entry(entry: Path, output_dir: Path, settings: ShardSettings) -> dict:
    """Split one raw file (or folder) into `output_dir/<shard>/`: train.csv, test.csv, heldout.csv, report.json."""
    report = ReadReport()
    files = [entry] if entry.is_file() else find_csv_files(entry)
    issues: list[Issue] = []
    for path in files:
        issues.extend(read_issue_file(path, report, label=str(path.relative_to(entry.parent))))
    seen: set[str] = set()
    unique: list[Issue] = []
    repeated = 0
    for issue in issues:
        key = row_key(issue.issue_url)
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        unique.append(issue)
    fraction = settings.sample_fraction
    if settings.sample_size is not None and unique:
        fraction = min(1.0, settings.sample_size / len(unique))
    if fraction is not None:
        unique = [issue for issue in unique if unit_hash(issue.issue_url, "sample", settings.seed) < fraction]
    held = {name.lower() for name in settings.heldout_repositories}
    sides: dict[str, list[Issue]] = {"train": [], "test": [], "heldout": []}
    for issue in unique:
        sides[side_of(issue, settings, held)].append(issue)
    shard = shard_name(entry)
    summary = report.as_dict() | {
        "shard": shard,
        "repeated_in_file": repeated,
        "sample_fraction": fraction,
        "train_rows": len(sides["train"]),
        "test_rows": len(sides["test"]),
        "heldout_rows": len(sides["heldout"]),
        "seed": settings.seed,
        "test_fraction": settings.test_fraction,
        "assignment": "sha256(seed, purpose, issue_url)",
    }
    with atomic_output_dir(Path(output_dir) / shard, step="split", inputs=[entry]) as staging:
        for side, rows in sides.items():
            write_issues(staging / f"{side}.csv", rows)
        write_json(staging / SHARD_REPORT, summary)
    return summary


def run_split_shards(input_dir: Path, output_dir: Path, settings: ShardSettings) -> dict:
    """Every top-level entry of `input_dir` (one under Pachyderm's glob `/*`) becomes one shard of `output_dir`."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise StageError("input folder does not exist", path=input_dir)
    entries = sorted(p for p in input_dir.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.is_file()))
    if not entries:
        raise StageError("no raw file to split", path=input_dir)
    shards = [split_entry(entry, output_dir, settings) for entry in entries]
    return {
        "shards": [shard["shard"] for shard in shards],
        **{
            key: sum(shard[key] for shard in shards)
            for key in ("rows_read", "rows_kept", "repeated_in_file", "train_rows", "test_rows", "heldout_rows")
        },
    }


def shard_dirs(folder: Path, marker_file: str) -> list[Path]:
    """The shards of a sharded output, sorted by name: the sub-folders holding `marker_file`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError("input folder does not exist", path=folder)
    return sorted(path for path in folder.iterdir() if path.is_dir() and (path / marker_file).is_file())


def is_sharded_split(folder: Path) -> bool:
    return not (Path(folder) / "test.csv").is_file() and bool(shard_dirs(folder, "test.csv"))


@dataclass
class MergedRows:
    """The rows of one side across shards, each key once (the first shard by name wins)."""

    issues: list[Issue] = field(default_factory=list)
    repeated_across_files: int = 0
    repeated_keys: Counter = field(default_factory=Counter)


def merge_side(split_dir: Path, side: str) -> MergedRows:
    merged = MergedRows()
    seen: set[str] = set()
    for shard in shard_dirs(split_dir, "test.csv"):
        path = shard / f"{side}.csv"
        if not path.is_file():
            continue
        for issue in read_issue_file(path, ReadReport(), label=f"{shard.name}/{side}.csv"):
            key = row_key(issue.issue_url)
            if key in seen:
                merged.repeated_across_files += 1
                merged.repeated_keys[key] += 1
                continue
            seen.add(key)
            merged.issues.append(issue)
    return merged


def flat_split_view(split_dir: Path, target: Path) -> dict:
    """Write the shards' merged train/test/heldout.csv into `target` (the layout `evaluate` and `build` read)."""
    target.mkdir(parents=True, exist_ok=True)
    repeated = {}
    for side in ("train", "test", "heldout"):
        merged = merge_side(split_dir, side)
        write_issues(target / f"{side}.csv", merged.issues)
        repeated[side] = merged.repeated_across_files
    return {"repeated_across_files": repeated}


def shard_reports(split_dir: Path) -> list[dict]:
    return [
        read_json(shard / SHARD_REPORT)
        for shard in shard_dirs(split_dir, "test.csv")
        if (shard / SHARD_REPORT).is_file()
    ]


def keys_of(issues: Iterable[Issue]) -> list[str]:
    return [row_key(issue.issue_url) for issue in issues]
