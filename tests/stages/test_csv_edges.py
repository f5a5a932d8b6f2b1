"""CSV edge cases: every row `stages split` reads is kept or counted under a reason, and `localpach put-file`
(localpach/csvcheck.py, the gate in front of raw_data) reads a file's rows the way split does."""

import json
from pathlib import Path

import pytest

from issue_titles.csvio import ReadReport, read_issue_file
from localpach.csvcheck import check_issue_csv
from localpach.errors import InputRefused
from tests.stages.conftest import run_stages

HEADER = "issue_url,issue_title,body"


def rows(count: int, prefix: str = "a") -> list[str]:
    return [
        f"https://x/{prefix}{i},Fix bug {prefix}{i},The body of issue {prefix}{i} says it crashes" for i in range(count)
    ]


def split_report(tmp_path: Path, content: str) -> dict:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "issues.csv").write_bytes(content.encode("utf-8"))
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out", "--test-fraction", "0.5") == 0
    return json.loads((tmp_path / "out" / "report.json").read_text())


def test_cr_only_line_endings_are_parsed_by_split(tmp_path):
    report = split_report(tmp_path, "\r".join([HEADER, *rows(4)]) + "\r")

    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (4, 4, {})


def test_cr_only_file_keeps_its_quoted_line_breaks(tmp_path):
    path = tmp_path / "issues.csv"
    path.write_bytes(f'{HEADER}\rhttps://x/1,Title,"first line\rsecond line"\r{rows(1)[0]}\r'.encode())

    issues = read_issue_file(path)

    assert [issue.body for issue in issues] == ["first line\rsecond line", "The body of issue a0 says it crashes"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_put_file_and_split_read_the_same_rows_whatever_the_line_endings(tmp_path, ending):
    path = tmp_path / "issues.csv"
    path.write_bytes((ending.join([HEADER, *rows(3), 'https://x/q,Quoted,"two' + ending + 'lines"']) + ending).encode())

    summary = check_issue_csv(path)
    report = ReadReport()
    issues = read_issue_file(path, report)

    assert summary.rows == report.rows_read == len(issues) == 4


def test_a_lone_cr_inside_an_unquoted_field_is_a_row_end_for_both(tmp_path):
    """Where a CR ends a record, put-file and split agree: put-file refuses the short row, split counts it."""
    path = tmp_path / "issues.csv"
    path.write_bytes(f"{HEADER}\nhttps://x/1,Title,broken\rbody\n{rows(1)[0]}\n".encode())

    with pytest.raises(InputRefused, match=r"issues.csv:\d+: row has 1 field\(s\), the header has 3"):
        check_issue_csv(path, "issues.csv")
    report = ReadReport()
    read_issue_file(path, report)
    assert (report.rows_read, report.rows_kept, dict(report.skipped)) == (3, 2, {"wrong_field_count": 1})


def test_a_repeated_header_line_is_counted_not_trained_on(tmp_path):
    """`cat a.csv b.csv > all.csv` repeats the header inside the file."""
    report = split_report(tmp_path, "\n".join([HEADER, *rows(3), HEADER, *rows(3, "b")]) + "\n")

    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (7, 6, {"repeated_header": 1})
    train_and_test = (tmp_path / "out" / "train.csv").read_text() + (tmp_path / "out" / "test.csv").read_text()
    assert train_and_test.count("issue_title") == 2  # the two files' own headers, no training row


def test_put_file_does_not_count_a_repeated_header_as_a_data_row(tmp_path):
    path = tmp_path / "issues.csv"
    path.write_text("\n".join([HEADER, *rows(2), HEADER, *rows(2, "b")]) + "\n")

    assert check_issue_csv(path).rows == 4


def test_an_unclosed_quote_does_not_swallow_the_next_good_row(tmp_path):
    """The quote opened on line 3 closes on line 4 (`"Quoted"`): that line is a good row and must be kept."""
    content = "\n".join(
        [HEADER, rows(1)[0], 'https://x/q,"Never closed,body', 'https://x/g,Good,"Quoted"', rows(1, "z")[0]]
    )
    report = split_report(tmp_path, content + "\n")

    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (4, 3, {"broken_quoting": 1})
    assert "https://x/g" in (tmp_path / "out" / "train.csv").read_text() + (tmp_path / "out" / "test.csv").read_text()


def test_a_multiline_record_with_the_wrong_field_count_does_not_hide_the_lines_it_spans(tmp_path):
    """A quote opened on line 3 closes on line 4 as a 4-field record: both lines are counted, the rest kept."""
    content = "\n".join([HEADER, rows(1)[0], 'https://x/q,Title,"opened', 'https://x/r,T,b",extra', *rows(2, "z")])
    report = split_report(tmp_path, content + "\n")

    assert report["rows_read"] == report["rows_kept"] + sum(report["skipped"].values())
    assert (report["rows_kept"], report["skipped"]) == (3, {"wrong_field_count": 2})


@pytest.mark.parametrize(
    "content",
    [
        "\r".join([HEADER, *rows(3)]),
        "\n".join([HEADER, *rows(2), HEADER, 'x,"open', *rows(2, "b"), 'y,"a""b",c,d']),
        "\r\n".join([HEADER, 'a,b,"c\r\nd"', '"e', 'f",g,h', ",,", *rows(2)]),
        "\n".join([HEADER, 'a,"b"c,d', 'q,"r', 's",t', '"u', *rows(2)]),
    ],
)
def test_every_row_read_is_kept_or_counted(tmp_path, content):
    path = tmp_path / "issues.csv"
    path.write_bytes(content.encode())
    report = ReadReport()

    issues = read_issue_file(path, report)

    assert report.rows_read == len(issues) + sum(report.skipped.values())
    assert report.rows_kept == len(issues)
