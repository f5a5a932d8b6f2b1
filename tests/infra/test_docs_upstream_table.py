"""docs/cluster.md's table of upstream behaviour names tests that exist: the table cannot drift from the suite."""
from __future__ import annotations

import re

from tests.infra.harness import ROOT


def table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    section = text[text.index("## 10. Upstream behaviour the program depends on"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| behaviour")]
    return [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]


def test_every_row_names_an_upstream_file_and_a_test() -> None:
    rows = table_rows()
    assert len(rows) >= 15
    for behaviour, source, guard in rows:
        assert re.search(r"[\w-]+/[\w.-]+", source), f"no upstream repository for: {behaviour}"
        assert "test" in guard, f"no test for: {behaviour}"


def test_every_test_the_table_names_exists() -> None:
    current_file = None
    for _, _, guard in table_rows():
        for path, name in re.findall(r"`(?:(tests/[\w/]+\.py|[\w]+\.py))?(?:::(\w+))?", guard):
            if path:
                current_file = path if path.startswith("tests/") else f"tests/infra/{path}"
                if not path.startswith("tests/") and not (ROOT / current_file).exists():
                    current_file = f"tests/delivery/{path}"
                assert (ROOT / current_file).exists(), current_file
            if name:
                assert current_file and f"def {name}(" in (ROOT / current_file).read_text(), f"{current_file}::{name}"
