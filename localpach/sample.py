"""Draw the vendored demo sample from the shared data set, reproducibly.

    python -m localpach.sample [--source ../shared/data/github_pr_issues.csv] [--rows 2500] [--seed 20240501]

A seeded uniform sample without replacement, written in the source's order with the source's CSV dialect
(RFC 4180, CRLF), so the same arguments always give byte-identical output.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "github_pr_issues.csv"
DEFAULT_TARGET = PROJECT_ROOT / "data" / "sample" / "github_issues_sample.csv"
DEFAULT_ROWS = 2500
DEFAULT_SEED = 20240501


def draw_sample(source: Path, target: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> int:
    """Write `rows` rows chosen with `random.Random(seed)` (header kept, source order kept)."""
    csv.field_size_limit(16 * 1024 * 1024)
    with open(source, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        records = list(reader)
    chosen = sorted(random.Random(seed).sample(range(len(records)), min(rows, len(records))))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(records[index] for index in chosen)
    return len(chosen)


def remove_rows(source: Path, target: Path, count: int, seed: int = 9) -> list[str]:
    """Copy `source` without `count` seeded-random data rows (the tutorial's step 9 edit); returns their URLs."""
    csv.field_size_limit(16 * 1024 * 1024)
    with open(source, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        records = list(reader)
    dropped = set(random.Random(seed).sample(range(len(records)), min(count, len(records))))
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(record for index, record in enumerate(records) if index not in dropped)
    url_column = header.index("issue_url") if "issue_url" in header else 0
    return [records[index][url_column] for index in sorted(dropped)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    written = draw_sample(args.source, args.target, args.rows, args.seed)
    print(f"wrote {written} rows to {args.target} ({args.target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
