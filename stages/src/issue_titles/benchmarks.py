"""Decoding speed, batched compiled loop vs the tutorial's per-token loop, on the same model and bodies."""

import time
from collections.abc import Sequence
from pathlib import Path

from issue_titles.fixtures import tiny_issues
from issue_titles.predictor import TitlePredictor


def sample_bodies(count: int, csv_path: Path | None = None) -> list[str]:
    """`count` bodies: from a CSV with a body column if given, else the generated tiny issues (repeated)."""
    if csv_path is not None:
        from issue_titles.csvio import BODY, read_issue_file

        bodies = [issue.body for issue in read_issue_file(csv_path, require=(BODY,))]
    else:
        bodies = [issue.body for issue in tiny_issues(rows=max(count, 1))]
    if not bodies:
        raise ValueError("no bodies to decode")
    return [bodies[index % len(bodies)] for index in range(count)]


def decode_speed(bundle: Path | str, n_bodies: int = 256, bodies: Sequence[str] | None = None) -> dict:
    """Time `predict` (one compiled loop for the batch) and `predict_reference` (a call per token per body).

    Both are warmed up first, so compilation and first-call costs are not counted.
    """
    predictor = TitlePredictor.load(bundle)
    bodies = list(bodies) if bodies is not None else sample_bodies(n_bodies)
    bodies = [bodies[index % len(bodies)] for index in range(n_bodies)]
    predictor.predict(bodies[:8])
    predictor.predict(bodies)
    predictor.predict_reference(bodies[:2])
    started = time.perf_counter()
    batched = predictor.predict(bodies)
    batched_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference = predictor.predict_reference(bodies)
    reference_seconds = time.perf_counter() - started
    return {
        "architecture": predictor.architecture,
        "bodies": n_bodies,
        "batched_seconds": round(batched_seconds, 3),
        "reference_seconds": round(reference_seconds, 3),
        "speedup": round(reference_seconds / batched_seconds, 1),
        "batched_bodies_per_second": round(n_bodies / batched_seconds, 1),
        "reference_bodies_per_second": round(n_bodies / reference_seconds, 1),
        "same_titles": batched == reference,
    }
