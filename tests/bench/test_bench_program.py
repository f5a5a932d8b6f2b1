"""The program benchmark evaluates both stacks through the product's offline render (infra/render.py); no benchmark
imports the test suite."""

import ast
from pathlib import Path

from bench import program
from infra import render

BENCH = Path(program.__file__).parent


def test_quick_program_benchmark_times_both_stacks_and_counts_their_resources() -> None:
    section = program.run(quick=True)
    assert [row[0] for row in section.rows] == list(render.STACKS)
    for stack, first, best, count in (tuple(map(str, row)) for row in section.rows):
        assert first != "failed", count  # a failing program is reported in the row; here it must not fail
        assert float(first) > 0 and best.endswith("(best of 1)")
        assert int(count) == len(render.run_program(stack))
    assert "infra/render.py" in section.notes[0]


def test_no_benchmark_imports_the_test_suite() -> None:
    imported = {
        (path.name, name)
        for path in BENCH.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if name == "tests" or name.startswith("tests.")
    }
    assert imported == set()
