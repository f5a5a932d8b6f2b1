"""Decoding benchmark: batched compiled greedy decoding vs the tutorial-style per-token loop (target >= 20x).

    python stages/bench_decode.py --model runs/bundle --bodies 256 [--data data/github_pr_issues_large.csv.gz]

Without --model it trains the tiny fixture model first (seconds), which measures the loop overhead rather than
a realistic model; pass a real bundle for the number that matters.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from issue_titles.benchmarks import decode_speed, sample_bodies
    from issue_titles.fixtures import tiny_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a bundle or train output (default: a freshly trained tiny one)")
    parser.add_argument("--bodies", type=int, default=256)
    parser.add_argument("--data", type=Path, help="CSV to take bodies from (default: generated bodies)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_bundle(Path(scratch) / "bundle")
        bodies = sample_bodies(args.bodies, args.data) if args.data else None
        print(json.dumps(decode_speed(model, args.bodies, bodies), indent=2))


if __name__ == "__main__":
    main()
