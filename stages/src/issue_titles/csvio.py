"""Read issue CSVs robustly: every row is either kept or counted under the reason it was skipped.

A `*.csv.gz` file is read like the `*.csv` it holds (decompressed on the way): the project's data set is vendored
gzipped, and `pachctl put file` stores a file as given, so the stage is where it gets decompressed.

Skip reasons (keys of `report.json`'s `skipped`): `empty_title`, `empty_body`, `broken_quoting`,
`undecodable_bytes`, `wrong_field_count`, `repeated_header` (the header line again inside the file, as
`cat a.csv b.csv` makes). A missing column, an unreadable file or a folder without CSVs is not a row problem but
an error for the whole step (StageError naming the file).

Records end at LF, CRLF or a lone CR outside quotes, as Python's csv module reads a file opened with
`newline=""`; localpach/csvcheck.py (the `put-file` gate) reads files that way, so both see the same rows.
"""

import csv
import gzip
import io
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from issue_titles.errors import StageError

URL, TITLE, BODY = "issue_url", "issue_title", "body"
COLUMNS = (URL, TITLE, BODY)
CSV_SUFFIXES = (".csv", ".csv.gz")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Issue:
    issue_url: str
    issue_title: str
    body: str


@dataclass
class ReadReport:
    """What happened to the rows of one or more files."""

    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    files: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "skipped": dict(sorted(self.skipped.items())),
            "files": self.files,
        }


def is_csv_name(name: str) -> bool:
    """*.csv, or *.csv.gz (gzipped CSV)."""
    return name.lower().endswith(CSV_SUFFIXES)


def find_csv_files(folder: Path) -> list[Path]:
    """All *.csv and *.csv.gz files below `folder`, sorted; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError("input folder does not exist or is not a folder", path=folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_csv_name(p.name))
    if not files:
        raise StageError("input folder has no *.csv or *.csv.gz files", path=folder)
    return files


def read_csv_bytes(path: Path) -> bytes:
    """The bytes of a CSV file, decompressed when its name ends in .gz."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StageError(f"cannot read file: {error.strerror}", path=path) from None
    if not path.name.lower().endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; a cut-off file is an EOFError
        raise StageError(f"not a readable gzip file ({error or 'truncated'})", path=path) from None


def read_issue_folder(folder: Path, require: Iterable[str] = COLUMNS) -> tuple[list[Issue], ReadReport]:
    """Read every CSV below `folder` (see `read_issue_file`)."""
    report = ReadReport()
    issues: list[Issue] = []
    for path in find_csv_files(folder):
        issues.extend(read_issue_file(path, report, require=require, label=str(path.relative_to(folder))))
    return issues, report


def _lines_and_header(path: Path, require: Iterable[str], expected: str) -> tuple[list[str], list[str]]:
    """A CSV's physical lines and its header as written, refusing binary content, an empty file (naming `expected`)
    and a missing required column, each with the file and line."""
    data = read_csv_bytes(path)
    if b"\x00" in data[:8192]:  # an image, an archive, a spreadsheet: say so, not "missing column" with its bytes
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise StageError("binary content (a NUL byte); a CSV is text", path=path, line=line)
    lines = _physical_lines(data.decode("utf-8-sig", errors="surrogateescape"))
    if not lines or not lines[0].strip():
        raise StageError(f"file is empty: expected a header with {expected}", path=path, line=1)
    raw_header = next(csv.reader([lines[0]]))
    header = [name.strip() for name in raw_header]
    for column in require:
        if column not in header:
            shown = ", ".join(printable(name) for name in header[:8]) + (", ..." if len(header) > 8 else "")
            raise StageError(f"missing column '{column}' (header has: {shown or 'nothing'})", path=path, line=1)
    return lines, raw_header


def read_issue_file(
    path: Path, report: ReadReport | None = None, *, require: Iterable[str] = COLUMNS, label: str | None = None
) -> list[Issue]:
    """Rows of one CSV as Issues; skipped rows are counted in `report` (overall and under `files[label]`)."""
    path = Path(path)
    require = tuple(require)
    report = report if report is not None else ReadReport()
    lines, raw_header = _lines_and_header(path, require, "columns " + ",".join(COLUMNS))
    header = [name.strip() for name in raw_header]
    positions = {name: header.index(name) for name in COLUMNS if name in header}
    issues: list[Issue] = []
    rows_read = rows_kept = 0
    skipped: Counter[str] = Counter()
    for _line_number, outcome in _records(lines, first=1, width=len(header)):
        rows_read += 1
        if isinstance(outcome, str):
            skipped[outcome] += 1
            continue
        reason = "repeated_header" if _is_header(outcome, header) else None
        reason = reason or _problem(outcome, len(header), positions, need_title=TITLE in require)
        if reason:
            skipped[reason] += 1
            continue
        issues.append(
            Issue(
                issue_url=outcome[positions[URL]].strip() if URL in positions else "",
                issue_title=outcome[positions[TITLE]].strip() if TITLE in positions else "",
                body=outcome[positions[BODY]].strip(),
            )
        )
        rows_kept += 1
    report.rows_read += rows_read
    report.rows_kept += rows_kept
    report.skipped.update(skipped)
    report.files[label or str(path)] = {
        "rows_read": rows_read,
        "rows_kept": rows_kept,
        "skipped": dict(sorted(skipped.items())),
    }
    return issues


def read_table(
    path: Path, report: ReadReport, *, require: Iterable[str] = (BODY,), label: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one CSV with every column and field as written, for steps that give the rows back.

    Rows that cannot be given back (broken quoting, the wrong number of fields, bytes that are not UTF-8) and
    repeated header lines are counted in `report` under their reason; every other row is kept, whatever its
    content (an empty body included: the caller counts it)."""
    path = Path(path)
    lines, raw_header = _lines_and_header(path, require, "a 'body' column")
    header = [name.strip() for name in raw_header]
    rows: list[list[str]] = []
    skipped: Counter = Counter()
    read = 0
    for _line_number, outcome in _records(lines, first=1, width=len(header)):
        read += 1
        if isinstance(outcome, str):
            skipped[outcome] += 1
        elif _is_header(outcome, header):
            skipped["repeated_header"] += 1
        elif len(outcome) != len(header):
            skipped["wrong_field_count"] += 1
        elif any(not _is_utf8(value) for value in outcome):
            skipped["undecodable_bytes"] += 1
        else:
            rows.append(outcome)
    report.rows_read += read
    report.rows_kept += len(rows)
    report.skipped.update(skipped)
    report.files[label or str(path)] = {
        "rows_read": read,
        "rows_kept": len(rows),
        "skipped": dict(sorted(skipped.items())),
    }
    return [name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for name in raw_header], rows


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str, limit: int = 60) -> str:
    """`text` safe for a one-line message: undecodable bytes as \\xNN, control characters escaped, cut at `limit`."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
    return text if len(text) <= limit else text[:limit] + "..."


def write_issues(path: Path, issues: Iterable[Issue]) -> None:
    """Write issues with the standard header (quoted as needed, UTF-8)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for issue in issues:
            writer.writerow((issue.issue_url, issue.issue_title, issue.body))


def _physical_lines(text: str) -> list[str]:
    """Split after LF, CRLF or a lone CR (what csv treats as a line end); unlike str.splitlines, other breaks
    (form feed, U+2028, ...) stay inside fields."""
    return io.StringIO(text, newline="").readlines()


def _records(lines: list[str], first: int, width: int) -> Iterator[tuple[int, list[str] | str]]:
    """Yield (line number, fields) for each record after the header, or (line number, skip reason).

    A quote that is never closed swallows the lines after it into one field, until the next quote character
    ends it (a broken record) or the file ends. So a broken record, or one that spans several lines and has the
    wrong number of fields, is counted once under its reason and parsing resumes on the line after the one where
    it started: the lines it swallowed are read again as records of their own, kept or counted.
    """
    start = first
    while start < len(lines):
        reader = csv.reader((lines[index] for index in range(start, len(lines))), strict=True)
        consumed = 0
        restart_at = None
        while True:
            record_start = start + consumed
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error:
                yield record_start + 1, "broken_quoting"
                restart_at = record_start + 1
                break
            spanned = reader.line_num - consumed
            consumed = reader.line_num
            if not fields:
                continue  # a blank line is not a row
            if spanned > 1 and len(fields) != width:
                yield record_start + 1, "wrong_field_count"
                restart_at = record_start + 1
                break
            yield record_start + 1, fields
        if restart_at is None:
            return
        start = restart_at


def _is_header(fields: list[str], header: list[str]) -> bool:
    return len(fields) == len(header) and [value.strip() for value in fields] == header


def _problem(fields: list[str], width: int, positions: dict[str, int], need_title: bool = True) -> str | None:
    if len(fields) != width:
        return "wrong_field_count"
    try:
        for value in fields:
            value.encode("utf-8")  # bytes that were not UTF-8 came in as lone surrogates
    except UnicodeEncodeError:
        return "undecodable_bytes"
    if need_title and not fields[positions[TITLE]].strip():
        return "empty_title"
    if not fields[positions[BODY]].strip():
        return "empty_body"
    return None
