"""Render the sections into bench/results.md and a plain table for the terminal."""

from pathlib import Path

from bench.common import Section


def render(facts: dict[str, str], sections: list[Section], command: str, base: Path) -> str:
    """Markdown for results.md; plot links are relative to `base`, the folder results.md is written to."""
    lines = ["# Benchmark results", "", f"Produced by `{command}` (a run output: re-run to refresh).", ""]
    lines += ["| fact | value |", "|---|---|"] + [f"| {key} | {value} |" for key, value in facts.items()]
    targets = [target for section in sections for target in section.targets]
    if targets:
        lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {name} | {measured} | **{result}** |" for name, measured, result in targets]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        if section.header and section.rows:
            lines += [section.table(), ""]
        lines += [f"- {note}" for note in section.notes]
        for plot in section.plots:
            lines.append(f"\n![{plot.stem}]({_relative(plot, base)})")
    return "\n".join(lines) + "\n"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def write(text: str, path: Path) -> Path:
    """Write results.md, creating its folder: a run of an hour must not end in a missing `--output` folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
