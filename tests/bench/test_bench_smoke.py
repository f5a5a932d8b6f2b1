"""Smoke test: the quick decoding benchmark runs end to end (greedy and the default beam) and writes a results
table with a verdict."""

from bench.__main__ import main
from issue_titles.predictor import DEFAULT_BEAM_WIDTH


def test_quick_decoding_benchmark_writes_results_with_ratio_and_its_plot_beside_them(tmp_path):
    output = tmp_path / "results.md"

    assert main(["--quick", "--only", "decoding", "--output", str(output)]) == 0

    text = output.read_text()
    assert "| fact | value |" in text and "tensorflow" in text
    assert "## Decoding (batched compiled vs per-token loop)" in text
    decoding_rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith(("| greedy", "| beam"))]
    beam = f"beam {DEFAULT_BEAM_WIDTH} (default)"
    assert [(row[0].strip(), row[1].strip()) for row in decoding_rows] == [
        ("greedy", "1"),
        ("greedy", "32"),
        (beam, "1"),
        (beam, "32"),
    ]
    assert all(row[6].strip().endswith("x") for row in decoding_rows)  # the speed-up over the per-token loop
    assert all(row[7].strip() == "yes" for row in decoding_rows)  # both paths gave the same titles
    assert "a tiny model: `stages` on 60 rows of the data set" in text
    assert "![decoding](plots/decoding.png)" in text  # a relative link that works where results.md is committed
    assert (tmp_path / "plots" / "decoding.png").stat().st_size > 0
