"""Smoke test: the quick decoding benchmark runs end to end and writes a results table with a verdict."""

from bench.__main__ import main


def test_quick_decoding_benchmark_writes_results_with_ratio_and_its_plot_beside_them(tmp_path):
    output = tmp_path / "results.md"

    assert main(["--quick", "--only", "decoding", "--output", str(output)]) == 0

    text = output.read_text()
    assert "| fact | value |" in text and "tensorflow" in text
    assert "## Decoding (batched compiled vs per-token loop)" in text
    decoding_rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 32 |")]
    assert len(decoding_rows) == 2
    assert all(row.split("|")[5].strip().endswith("x") for row in decoding_rows)
    assert "a tiny model: `stages` on 60 rows of the data set" in text
    assert "![decoding](plots/decoding.png)" in text  # a relative link that works where results.md is committed
    assert (tmp_path / "plots" / "decoding.png").stat().st_size > 0
