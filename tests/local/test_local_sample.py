"""The vendored demo sample is what PROVENANCE.md says it is."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from tests.local.conftest import PROJECT_ROOT

from localpach.csvcheck import check_issue_csv
from localpach.sample import DEFAULT_ROWS, DEFAULT_SEED, draw_sample

SAMPLE = PROJECT_ROOT / "data" / "sample" / "github_issues_sample.csv"
PROVENANCE = PROJECT_ROOT / "data" / "sample" / "PROVENANCE.md"
SHARED = PROJECT_ROOT.parent / "shared" / "data" / "github_pr_issues.csv"


def recorded_sha256() -> str:
    match = re.search(r"sha256 \| `([0-9a-f]{64})`", PROVENANCE.read_text())
    assert match, "PROVENANCE.md records the sample's sha256"
    return match.group(1)


def test_the_sample_is_a_small_valid_issue_csv_matching_its_recorded_hash() -> None:
    summary = check_issue_csv(SAMPLE)

    assert summary.rows == DEFAULT_ROWS
    assert SAMPLE.stat().st_size < 2 * 1024 * 1024
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() == recorded_sha256()


@pytest.mark.skipif(not SHARED.is_file(), reason="the shared data set is not mounted")
def test_the_sample_redraws_byte_identically_from_the_shared_data(tmp_path: Path) -> None:
    redrawn = draw_sample(SHARED, tmp_path / "sample.csv", DEFAULT_ROWS, DEFAULT_SEED)

    assert redrawn == DEFAULT_ROWS
    assert (tmp_path / "sample.csv").read_bytes() == SAMPLE.read_bytes()
