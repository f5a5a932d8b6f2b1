"""`python -m bench.resample_repositories --split DIR --pre-process DIR --output DIR [--alpha 0.5]`: a repository-
balanced copy of a pre_process output, for the "balanced repositories" row of stages/README.md's variants table.

The training rows come from 32 repositories of very different sizes (pulumi/pulumi 6,227 rows, flyteorg/flyte 181).
This draws the same number of rows again with each repository's share proportional to its size ** alpha
(temperature sampling, as multilingual translation models balance languages): alpha 1 is the data as it is, 0 gives
every repository the same share. A repository drawn beyond its size repeats rows (all of them first); one drawn
below it is subsampled. The output has pre_process's files, so `stages train --input <output>` trains on it as is.
"""

import argparse
import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path


def balanced_indices(repositories: list[str], alpha: float, seed: int = 0):
    """Row indices: len(repositories) rows in all, repository r getting a share proportional to n_r ** alpha."""
    import numpy as np

    rows_of: dict[str, list[int]] = defaultdict(list)
    for index, repository in enumerate(repositories):
        rows_of[repository].append(index)
    weights = {repository: len(rows) ** alpha for repository, rows in rows_of.items()}
    total = sum(weights.values())
    rng = np.random.default_rng(seed)
    chosen = []
    for repository, rows in rows_of.items():  # in order of first appearance
        pool = np.asarray(rows)
        wanted = round(len(repositories) * weights[repository] / total)
        if wanted <= len(pool):
            chosen.append(rng.choice(pool, wanted, replace=False))
        else:
            chosen.append(np.concatenate([pool, rng.choice(pool, wanted - len(pool), replace=True)]))
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resample_repositories", description=__doc__.split("\n")[0])
    parser.add_argument("--split", type=Path, required=True, help="the split output whose train.csv was pre-processed")
    parser.add_argument("--pre-process", type=Path, required=True, help="the pre_process output of that train.csv")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args(argv)

    import numpy as np

    from issue_titles.preprocess import ARRAYS
    from issue_titles.split import repository_of

    with open(args.split / "train.csv", newline="", encoding="utf-8") as handle:
        repositories = [repository_of(row["issue_url"]) or "?" for row in csv.DictReader(handle)]
    summary = json.loads((args.pre_process / "preprocess.json").read_text())
    if summary["rows"] != len(repositories):
        parser.error(f"{args.pre_process} has {summary['rows']} rows, {args.split}/train.csv {len(repositories)}: "
                     "pre_process skipped rows, so rows cannot be matched to repositories")  # fmt: skip
    indices = balanced_indices(repositories, args.alpha)
    args.output.mkdir(parents=True, exist_ok=False)
    for name in ("body_vocab.json", "title_vocab.json"):
        shutil.copyfile(args.pre_process / name, args.output / name)
    for name in ARRAYS:
        np.save(args.output / f"{name}.npy", np.load(args.pre_process / f"{name}.npy")[indices], allow_pickle=False)
    (args.output / "preprocess.json").write_text(json.dumps(summary | {"rows": len(indices)}, indent=2))
    print(f"{len(indices):,} rows from {len(set(repositories))} repositories (alpha {args.alpha}) -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
