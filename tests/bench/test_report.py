"""The report lands where `--output` says, even in a folder that does not exist yet (the run's end is no place to
find that out)."""

from pathlib import Path

from bench.report import write


def test_the_report_is_written_into_a_folder_it_creates(tmp_path: Path) -> None:
    target = tmp_path / "not" / "there" / "results.md"

    assert write("# Benchmark results\n", target) == target
    assert target.read_text(encoding="utf-8") == "# Benchmark results\n"
