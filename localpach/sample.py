"""The project's data set (vendored gzipped in data/), smaller samples of it, and the demo's data edit, reproducibly.

    python -m localpach.sample --target FILE [--source data/github_pr_issues_large.csv.gz] [--rows 2500] [--seed 1]

A seeded uniform sample without replacement, written in the source's order with the source's CSV dialect
(RFC 4180, CRLF), so the same arguments always give byte-identical output. A target ending in .gz is written
gzipped (no name or time stamp in the header, so that too is byte-identical).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
from pathlib import Path
from typing import IO

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_SET_NAME = "github_pr_issues_large.csv.gz"
DATA_SET = PROJECT_ROOT / "data" / DATA_SET_NAME
DEFAULT_ROWS = 2500
DEFAULT_SEED = 20240501
FIELD_LIMIT = 16 * 1024 * 1024


def find_data_set() -> Path | None:
    """data/<DATA_SET_NAME> under the current directory (the project root) or beside the installed package."""
    for candidate in (Path.cwd() / "data" / DATA_SET_NAME, DATA_SET):
        if candidate.is_file():
            return candidate
    return None


class _GzipWriter(gzip.GzipFile):
    """gzip output with no file name and no time stamp in its header (same rows, same bytes); closes its file."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb")
        super().__init__(filename="", mode="wb", fileobj=self._raw, compresslevel=1, mtime=0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_text(path: Path, mode: str = "r") -> IO[str]:
    """A CSV file as text, gzip-(de)compressed when its name ends in .gz."""
    if Path(path).name.lower().endswith(".gz"):
        binary = _GzipWriter(path) if mode == "w" else gzip.open(path, "rb")
        return io.TextIOWrapper(binary, encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


def read_rows(source: Path) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of a CSV or CSV.gz."""
    csv.field_size_limit(FIELD_LIMIT)
    with open_text(source) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def write_rows(target: Path, header: list[str], records: object) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_text(target, "w") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(records)  # type: ignore[arg-type]


def draw_sample(source: Path, target: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> int:
    """Write `rows` rows chosen with `random.Random(seed)` (header kept, source order kept)."""
    header, records = read_rows(source)
    chosen = sorted(random.Random(seed).sample(range(len(records)), min(rows, len(records))))
    write_rows(target, header, (records[index] for index in chosen))
    return len(chosen)


def remove_rows(source: Path, target: Path, count: int, seed: int = 9) -> list[str]:
    """Copy `source` without `count` seeded-random data rows (the tutorial's step 9 edit); returns their URLs."""
    header, records = read_rows(source)
    dropped = set(random.Random(seed).sample(range(len(records)), min(count, len(records))))
    write_rows(target, header, (record for index, record in enumerate(records) if index not in dropped))
    url_column = header.index("issue_url") if "issue_url" in header else 0
    return [records[index][url_column] for index in sorted(dropped)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DATA_SET)
    parser.add_argument("--target", type=Path, required=True, help="CSV to write (.csv or .csv.gz)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    written = draw_sample(args.source, args.target, args.rows, args.seed)
    print(f"wrote {written} rows to {args.target} ({args.target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
