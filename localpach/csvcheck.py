"""The gate in front of raw_data: only well-formed issue CSVs get in, so nothing downstream starts on garbage.

`put-file` checks the whole file before writing anything. Structural problems (not text, not UTF-8, broken
quoting, rows with the wrong number of fields, missing columns, no rows) are refused with the file name and line
number of each problem; row *content* (an empty title, say) is left to `stages split`, which skips and counts it.
Rows are read as `stages split` reads them (issue_titles/csvio.py): a record ends at LF, CRLF or a lone CR outside
quotes, so a file with old-Mac CR-only line endings is accepted by both; a repeated header line (`cat a.csv b.csv`)
is not a data row for either (split counts it as `repeated_header`).
A gzipped CSV (stored under a `*.csv.gz` path, as `pachctl put file` would store it: as given) is checked through
its decompressed text; `stages split` decompresses it the same way.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

from localpach.errors import InputRefused

REQUIRED_COLUMNS = ("issue_url", "issue_title", "body")
MAX_FIELD_BYTES = 16 * 1024 * 1024
MAX_REPORTED = 5
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CsvSummary:
    """What was accepted: the header and the number of data rows."""

    columns: tuple[str, ...]
    rows: int


def _refuse(name: str, problems: list[str], total: int | None = None) -> InputRefused:
    shown = problems[:MAX_REPORTED]
    more = (total or len(problems)) - len(shown)
    lines = [f"refused {name}: not a valid issue CSV ({', '.join(REQUIRED_COLUMNS)}); nothing was written"]
    lines += [f"  {problem}" for problem in shown]
    if more > 0:
        lines.append(f"  ... and {more} more problem(s)")
    return InputRefused("\n".join(lines))


def _open_bytes(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _check_compression(path: Path, name: str, compressed: bool) -> None:
    """A gzip file must go under a .csv.gz path and a .csv.gz path must hold a gzip file: split reads by the name."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if compressed and magic != GZIP_MAGIC:
        raise _refuse(name, [f"{name}: not gzip-compressed, but the path in the repo ends in .gz (drop the .gz)"])
    if not compressed and magic == GZIP_MAGIC:
        raise _refuse(name, [f"{name}: gzip-compressed; put it under a path ending in .csv.gz"])


def _check_text(path: Path, name: str, compressed: bool = False) -> None:
    """Refuse binary or non-UTF-8 files, naming the first offending line."""
    with _open_bytes(path, compressed) as handle:
        head = handle.read(8192)
        if b"\x00" in head:  # images, archives, spreadsheets: say "binary", not "bad byte on line 1"
            line = head[: head.index(b"\x00")].count(b"\n") + 1
            raise _refuse(name, [f"{name}:{line}: binary content (NUL byte); a CSV is text"])
        handle.seek(0)
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:
                raise _refuse(name, [f"{name}:{number}: binary content (NUL byte); a CSV is text"])
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                raise _refuse(
                    name, [f"{name}:{number}: not UTF-8 text (byte 0x{byte:02x} at column {error.start + 1})"]
                ) from None


def check_issue_csv(path: Path, display_name: str | None = None, compressed: bool | None = None) -> CsvSummary:
    """Validate `path` as an issue CSV; raise InputRefused naming file and line, or return a summary.

    `compressed` (default: the file name ends in .gz) reads the file as a gzipped CSV.
    """
    name = display_name or str(path)
    if not path.exists():
        raise InputRefused(f"refused {name}: no such file")
    if not path.is_file():
        raise InputRefused(f"refused {name}: not a regular file")
    compressed = path.name.lower().endswith(".gz") if compressed is None else compressed
    _check_compression(path, name, compressed)
    try:
        return _check_content(path, name, compressed)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise _refuse(name, [f"{name}: not a readable gzip file ({error or 'truncated'})"]) from None


def _check_content(path: Path, name: str, compressed: bool) -> CsvSummary:
    _check_text(path, name, compressed)
    csv.field_size_limit(MAX_FIELD_BYTES)
    problems: list[str] = []
    total_problems = 0
    rows = 0
    with _open_bytes(path, compressed) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise _refuse(name, [f"{name}:1: empty file (expected a header row)"])
            columns = tuple(column.strip() for column in header)
            missing = [column for column in REQUIRED_COLUMNS if column not in columns]
            if missing:
                found = ", ".join(repr(c) for c in columns[:6]) + (" ..." if len(columns) > 6 else "")
                raise _refuse(name, [f"{name}:1: missing column(s) {', '.join(missing)} (header has {found})"])
            width = len(columns)
            start_line = reader.line_num + 1
            for row in reader:
                if not row:
                    start_line = reader.line_num + 1
                    continue
                if len(row) != width:
                    total_problems += 1
                    problems.append(f"{name}:{start_line}: row has {len(row)} field(s), the header has {width}")
                elif tuple(value.strip() for value in row) != columns:
                    rows += 1
                start_line = reader.line_num + 1
        except csv.Error as error:
            problems.append(f"{name}:{reader.line_num}: broken CSV ({error})")
            total_problems += 1
            raise _refuse(name, problems, total_problems) from None
    if problems:
        raise _refuse(name, problems, total_problems)
    if rows == 0:
        raise _refuse(name, [f"{name}: no data rows after the header"])
    return CsvSummary(columns=columns, rows=rows)
