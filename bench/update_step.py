"""`python -m bench.update_step [--scales 0.05,0.1,0.2,0.5] [--rows N] [--scratch DIR]`: how large an update's step
should be (issue 32).

The incremental benchmark's state A (bench/incremental.py: the same data cut, 90% as four base files) trains its base
model from scratch once; then, for each `--update-lr-scale` in `--scales`, a copy of that state takes update 1 (the
same 1% file) with that scale, through the project's incremental specs with only train's flag changed, and the
table gives each updated model's held-out-repositories ROUGE-L against the base model it started from. The chain is
deterministic, so the differences are the step size's, not noise between trainings. With `--scratch DIR` the states
are kept there and a second run reuses the trained base (each further scale costs one update, ~2 min on the full
data). The figures behind UpdateSettings.learning_rate_scale are in bench/results.md, "Update step size".
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.incremental import batches, build_outcome, lineage, put, run_all

BASE_DONE = "base-trained"  # marks a state A whose base model is trained and whose update 1 is put


def specs_with_update_scale(specs: list[dict[str, Any]], scale: float) -> list[dict[str, Any]]:
    """The project's incremental specs with `--update-lr-scale scale` on train's command; nothing else changes."""
    changed = json.loads(json.dumps(specs))
    trains = [spec for spec in changed if spec["pipeline"]["name"] == "train"]
    if len(trains) != 1:
        raise ValueError(f"expected one train pipeline, found {len(trains)}")
    trains[0]["transform"]["cmd"] += ["--update-lr-scale", str(scale)]
    return changed


def base_state(scratch: Path, rows: int | None) -> Path:
    """State A with its base model trained and update 1 put, trained here unless a previous run left it."""
    state = scratch / "A"
    if not (scratch / BASE_DONE).exists():
        shutil.rmtree(state, ignore_errors=True)
        base, updates, _ = batches(scratch, rows)
        put(state, base)
        run_all(state, [])
        put(state, updates[:1])
        (scratch / BASE_DONE).touch()
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.update_step", description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="0.05,0.1,0.2,0.5", help="comma-separated --update-lr-scale values")
    parser.add_argument("--rows", type=int, default=None, help="a seeded sample of this many rows (default: all)")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the states here (and reuse a trained base)")
    args = parser.parse_args(argv)
    scales = [float(text) for text in args.scales.split(",") if text.strip()]
    if not scales or not all(0 < scale <= 1 for scale in scales):
        parser.error("--scales: each value in (0, 1]")

    from localpach.specs import local_settings, project_specs

    with tempfile.TemporaryDirectory(prefix="update-step-") as temporary:
        scratch = args.scratch or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        state = base_state(scratch, args.rows)
        start, start_decoding = build_outcome(state)
        print(f"base model (A, from scratch): held-out ROUGE-L {start:.4f}, decoding {start_decoding}")
        print("| --update-lr-scale | held-out ROUGE-L | vs the base model | update wall s | decoding |")
        print("|---|---|---|---|---|")
        specs = project_specs(local_settings(incremental=True))
        for scale in scales:
            copy = scratch / f"A-scale-{scale}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(state, copy, symlinks=True)
            spec_file = scratch / f"specs-scale-{scale}.json"
            spec_file.write_text(json.dumps(specs_with_update_scale(specs, scale)))
            started = time.perf_counter()
            run_all(copy, [], "--specs", str(spec_file))
            seconds = time.perf_counter() - started
            if lineage(copy)["mode"] != "update":
                raise RuntimeError(f"scale {scale}: train did not update ({lineage(copy)['reason']})")
            quality, decoding = build_outcome(copy)
            print(f"| {scale:g} | {quality:.4f} | {quality - start:+.4f} | {seconds:.0f} | {decoding} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
