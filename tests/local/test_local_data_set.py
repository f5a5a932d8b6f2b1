"""The vendored data set is what data/README.md says it is, and localpach takes it as it is (gzipped)."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
from pathlib import Path

import pytest

from localpach.data import put_file
from localpach.errors import InputRefused
from localpach.pfs import PFS
from localpach.sample import DATA_SET, draw_sample, read_rows, remove_rows
from tests.local.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "data" / "README.md"


def recorded(label: str) -> str:
    match = re.search(rf"sha256 \({re.escape(label)}\) \| `([0-9a-f]{{64}})`", README.read_text())
    assert match, f"data/README.md records the sha256 of {label}"
    return match.group(1)


def test_the_data_set_is_the_recorded_file_well_under_the_size_limit() -> None:
    compressed = DATA_SET.read_bytes()

    assert len(compressed) < 20 * 1024 * 1024
    assert hashlib.sha256(compressed).hexdigest() == recorded("`.csv.gz`")
    assert hashlib.sha256(gzip.decompress(compressed)).hexdigest() == recorded("the CSV inside")


def test_put_file_stores_the_gzipped_data_set_as_given_and_counts_its_rows(tmp_path: Path) -> None:
    result = put_file(tmp_path / "state", "raw_data", DATA_SET.name, DATA_SET)

    assert result.rows == 76_923
    stored = result.commit.files[DATA_SET.name] if result.commit else None
    assert stored is not None and stored.size == DATA_SET.stat().st_size


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzipped sample of the data set, drawn once for the module (each draw reads and parses the whole data set,
    ~1 CPU s): the reproducibility test draws it again to compare, the refusal tests copy it. Read-only."""
    path = tmp_path_factory.mktemp("sample") / "sample.csv.gz"
    draw_sample(DATA_SET, path, rows=200, seed=1)
    return path


def test_a_sample_and_the_demo_edit_are_reproducible_and_stay_gzipped(sample: Path, tmp_path: Path) -> None:
    draw_sample(DATA_SET, tmp_path / "again.csv.gz", rows=200, seed=1)

    removed = remove_rows(sample, tmp_path / "edited.csv.gz", 5)

    assert sample.read_bytes() == (tmp_path / "again.csv.gz").read_bytes()
    assert sample.read_bytes()[:2] == b"\x1f\x8b"
    header, rows = read_rows(tmp_path / "edited.csv.gz")
    assert header == ["issue_url", "issue_title", "body"] and len(rows) == 195
    assert len(removed) == 5 and not set(removed) & {row[0] for row in rows}


def test_put_file_refuses_a_gzip_file_under_a_plain_csv_path(sample: Path, tmp_path: Path) -> None:
    source = tmp_path / "issues.csv.gz"
    shutil.copyfile(sample, source)

    try:
        put_file(tmp_path / "state", "raw_data", "issues.csv", source)
    except InputRefused as refused:
        assert "gzip-compressed; put it under a path ending in .csv.gz" in str(refused)
    else:
        raise AssertionError("a .gz file stored as .csv would reach split as garbage")
    assert not (tmp_path / "state" / "repos").exists() or PFS(tmp_path / "state").find_repo("raw_data") is None


def test_put_file_refuses_a_cut_off_gzip_file_naming_it(sample: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(sample.read_bytes()[: sample.stat().st_size // 2])

    try:
        put_file(tmp_path / "state", "raw_data", "cut.csv.gz", cut)
    except InputRefused as refused:
        assert f"refused {cut}" in str(refused) and "not a readable gzip file" in str(refused)
    else:
        raise AssertionError("a truncated .csv.gz was accepted")
