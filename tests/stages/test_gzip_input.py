"""split reads a gzipped CSV (the vendored data set's form) like the CSV inside it, and names a broken one."""

import gzip
import json

from tests.stages.conftest import first_rows, run_stages


def test_split_reads_a_csv_gz_like_the_csv_inside(tmp_path, capsys):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir(), packed.mkdir()
    first_rows(plain / "issues.csv", 60)
    (packed / "issues.csv.gz").write_bytes(gzip.compress((plain / "issues.csv").read_bytes()))

    assert run_stages("split", "--input", plain, "--output", tmp_path / "from_plain") == 0
    assert run_stages("split", "--input", packed, "--output", tmp_path / "from_packed") == 0

    for name in ("train.csv", "test.csv"):
        assert (tmp_path / "from_packed" / name).read_bytes() == (tmp_path / "from_plain" / name).read_bytes()
    report = json.loads((tmp_path / "from_packed" / "report.json").read_text())
    assert report["rows_read"] == 60 and report["files"] == {"issues.csv.gz": report["files"]["issues.csv.gz"]}


def test_split_names_a_csv_gz_that_is_not_gzip(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "issues.csv.gz").write_text("issue_url,issue_title,body\n")

    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "issues.csv.gz" in error and "not a readable gzip file" in error
    assert not (tmp_path / "out").exists()
