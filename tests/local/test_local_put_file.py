"""put-file versions good CSVs and refuses bad ones before writing anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localpach.data import put_file
from localpach.errors import InputRefused
from localpach.pfs import PFS
from tests.local.conftest import localpach_cli
from tests.local.localpach_fakes import issue_csv


def snapshot(pfs: PFS) -> tuple:
    """Everything a refusal must leave as it was: repos, heads, commit records."""
    if not pfs.exists():
        return ()
    return tuple(
        (repo.name, pfs.head(repo.name), sorted(p.name for p in (pfs.repos_dir / repo.name / "commits").iterdir()))
        for repo in pfs.list_repos(include_system=True)
    )


def test_put_file_commits_the_csv_with_its_content_hash(state: Path, tmp_path: Path) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=3)

    result = put_file(state, "raw_data", "issues.csv", source)

    commit = PFS(state).resolve("raw_data", "master")
    assert result.commit == commit and result.rows == 3
    assert len(commit.id) == 32 and commit.origin == "user"
    assert PFS(state).objects.read_bytes(commit.files["issues.csv"].hash) == source.read_bytes()


def test_putting_identical_content_again_makes_no_new_commit(state: Path, tmp_path: Path) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=3)
    first = put_file(state, "raw_data", "issues.csv", source)

    again = put_file(state, "raw_data", "issues.csv", source, overwrite=True)

    assert again.commit is None
    assert first.commit is not None and PFS(state).head("raw_data") == first.commit.id


BAD_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.csv:3: binary content (NUL byte)"),
    "missing-column": (b"issue_url,issue_title\r\nhttps://x,t\r\n", "bad.csv:1: missing column(s) body"),
    "not-utf8": (
        "issue_url,issue_title,body\r\nhttps://x,t,ok\r\nhttps://y,t,caf\xe9\r\n".encode("latin-1"),
        "bad.csv:3: not UTF-8 text",
    ),
    "wrong-field-count": (
        b"issue_url,issue_title,body\r\nhttps://x,t,b\r\nhttps://y,only two\r\nhttps://z,t,b\r\n",
        "bad.csv:3: row has 2 field(s), the header has 3",
    ),
    "broken-quoting": (b'issue_url,issue_title,body\r\nhttps://x,t,"never closed\r\n', "bad.csv:2: broken CSV"),
    "header-only": (b"issue_url,issue_title,body\r\n", "no data rows"),
    "empty": (b"", "bad.csv:1: empty file"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_put_file_refuses_a_bad_csv_naming_file_and_line_and_leaves_the_repo_unchanged(
    case: str, state: Path, tmp_path: Path
) -> None:
    put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "good.csv", rows=2))
    before = snapshot(PFS(state))
    content, expected = BAD_FILES[case]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)

    with pytest.raises(InputRefused) as refused:
        put_file(state, "raw_data", "issues.csv", bad, overwrite=True)

    assert expected in refused.value.message
    assert snapshot(PFS(state)) == before


def test_cli_refusal_prints_the_file_and_line_and_exits_2(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"issue_url,title,body\r\nhttps://x,t,b\r\n")

    result = localpach_cli("--state", str(state), "put-file", "raw_data", "issues.csv", "-f", str(bad))

    assert result.returncode == 2
    assert f"{bad}:1: missing column(s) issue_title" in result.stderr
    assert "nothing was written" in result.stderr
    assert not PFS(state).exists() or PFS(state).head("raw_data") is None


def test_put_file_refuses_a_repo_path_that_split_would_not_read(state: Path, tmp_path: Path) -> None:
    with pytest.raises(InputRefused, match=re.escape("must end in .csv")):
        put_file(state, "raw_data", "issues.txt", issue_csv(tmp_path / "good.csv", rows=2))


def test_put_file_refuses_to_replace_an_existing_file_without_overwrite(state: Path, tmp_path: Path) -> None:
    first = put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "a.csv", rows=2))

    with pytest.raises(InputRefused, match="already exists; pass -o/--overwrite"):
        put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "b.csv", rows=3, seed="b"))

    assert first.commit is not None and PFS(state).head("raw_data") == first.commit.id


def test_put_file_refuses_to_write_into_a_pipeline_output_repo(state: Path, tmp_path: Path) -> None:
    pfs = PFS(state)
    pfs.init()
    pfs.create_repo("split", kind="pipeline")

    with pytest.raises(InputRefused, match="output repo of a pipeline"):
        put_file(state, "split", "issues.csv", issue_csv(tmp_path / "a.csv", rows=2))

    assert pfs.head("split") is None


def test_put_file_stores_the_bytes_it_checked_even_if_the_file_changes_while_it_waits(
    state: Path, tmp_path: Path
) -> None:
    from localpach.lock import StateLock

    source = issue_csv(tmp_path / "issues.csv", rows=3)
    checked = source.read_bytes()
    PFS(state).init()
    holder = StateLock(state, "a running localpach run")
    holder.acquire()

    def swap_then_let_go(message: str) -> None:  # while put-file waits for the lock, the file becomes binary
        source.write_bytes(b"\x00\x01\x02 not a csv" * 100)
        holder.release()

    result = put_file(state, "raw_data", "issues.csv", source, on_wait=swap_then_let_go)
    assert result.commit is not None

    stored = PFS(state).objects.read_bytes(result.commit.files["issues.csv"].hash)
    assert stored == checked
    assert result.rows == 3


def test_put_file_refuses_a_file_name_no_step_could_open_naming_the_limit(state: Path, tmp_path: Path) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=3)

    with pytest.raises(
        InputRefused, match="a file or folder name in a repo may have at most 255 bytes \\(it has 304\\)"
    ):
        put_file(state, "raw_data", "x" * 300 + ".csv", source)

    assert not (state / "repos" / "raw_data").exists()


def test_put_file_refuses_a_path_over_1024_bytes(state: Path, tmp_path: Path) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=3)

    with pytest.raises(InputRefused, match="a path in a repo may have at most 1024 bytes"):
        put_file(state, "raw_data", "/".join(["d" * 200] * 6) + "/a.csv", source)
