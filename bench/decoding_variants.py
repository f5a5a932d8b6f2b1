"""`python -m bench.decoding_variants --model FOLDER --split FOLDER`: decoding-only variants of a trained model.

Issue 14 asks for a margin over the extractive baselines on repositories the model never saw. This measures what
decoding alone can add to a trained pointer-generator, with no new training. For each variant it scores the titles
of the held-out repositories (`heldout.csv`: overall, and the smallest margin of one repository) and of the
row-level test split:

- `beam:W:A[:C]`: beam width W, GNMT length penalty A, copy bias C (the predictor's default when left out);
- `copy:F`: the default beam, with the copy switch's odds multiplied by F at every step (the predictor's
  `copy_bias`: F > 1 copies more body words, F < 1 generates more from the title vocabulary, 1 decodes as trained);
- `rerank:A`: the default beam's title competes with extractive candidates from the cleaned body (its first
  sentence and its first 4, 6, 8 and 10 words, cut to the title length). The model scores each candidate by teacher
  forcing, its log-probability divided by the GNMT penalty with exponent A, and the best one is the title. The
  upper bound is the oracle that picks the better of the model's title and the first sentence.

The baselines are `stages evaluate`'s (the best of the four, per repository), computed once.

`--validation` also scores each variant on the training's own validation rows: the last `validation_split` of
`train.csv` (model.json), which Keras held out of the fit. That is where a decoding setting should be chosen (as
`stages evaluate` and `build` choose the length penalty and copy bias); the held-out repositories and the test split
then only confirm it.
"""

import argparse
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_VARIANTS = "beam:2:2:1,beam:2:1.75:1,beam:3:1.75,copy:1,copy:1.3,copy:1.6,copy:2,rerank:1,rerank:2"
RERANK_LEADS = (4, 6, 8, 10)


def title_log_probabilities(predictor, bodies: list[str], titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(summed log P, ids scored) of each title given its body, by teacher forcing; -inf where a word is neither in
    the title vocabulary nor in the body (the model cannot write it)."""
    encoder, model = predictor.encoder, predictor.model
    body = encoder.encode_bodies(bodies)
    target = encoder.encode_titles(titles, body["body_tokens"])
    sums, counts = [], []
    for start in range(0, len(bodies), 512):
        rows = slice(start, start + 512)
        copy = target["title_copy"][rows]
        probability = model(
            {
                "body": body["body"][rows],
                "body_copy": body["body_copy"][rows],
                "body_grams": body["body_grams"][rows],
                "decoder_input": target["title"][rows, :-1],
                "target": copy[:, 1:],
            },
            training=False,
        )
        real = copy[:, 1:] != 0
        logs = np.where(real, np.log(np.clip(np.asarray(probability, np.float64), 1e-9, 1.0)), 0.0).sum(axis=1)
        sums.append(np.where((copy[:, 1:] == 1).any(axis=1), -np.inf, logs))
        counts.append(real.sum(axis=1))
    return np.concatenate(sums), np.concatenate(counts)


def reranked(predictor, bodies: list[str], beam_titles: list[str], alpha: float) -> list[str]:
    """The candidate with the best length-normalised model score: the beam's title or an extractive one."""
    from issue_titles.metrics import first_sentence, lead_words
    from issue_titles.text import clean_body

    words = predictor.config.title_length - 2
    cleaned = [clean_body(body) for body in bodies]
    pools = [beam_titles, [" ".join(first_sentence(text).split()[:words]) for text in cleaned]]
    pools += [[lead_words(text, min(k, words)) for text in cleaned] for k in RERANK_LEADS]
    best = np.full(len(bodies), -np.inf)
    chosen = list(beam_titles)
    for candidates in pools:
        logs, counts = title_log_probabilities(predictor, bodies, candidates)
        normalised = np.where(counts > 1, logs / ((5.0 + counts) / 6.0) ** alpha, -np.inf)
        for row in np.flatnonzero(normalised > best):
            best[row], chosen[row] = normalised[row], candidates[row]
    return chosen


def titles_for(variant: str, model_dir: Path, bodies: list[str]) -> list[str]:
    from issue_titles.predictor import DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, TitlePredictor

    kind, *values = variant.split(":")
    if kind == "beam":
        bias = float(values[2]) if len(values) > 2 else None
        predictor = TitlePredictor.load(model_dir, beam_width=int(values[0]), length_penalty=float(values[1]),
                                        copy_bias=bias)  # fmt: skip
        return predictor.predict(bodies)
    if kind == "copy":
        return TitlePredictor.load(model_dir, copy_bias=float(values[0])).predict(bodies)
    predictor = TitlePredictor.load(model_dir, beam_width=DEFAULT_BEAM_WIDTH, length_penalty=DEFAULT_LENGTH_PENALTY)
    if kind == "rerank":
        return reranked(predictor, bodies, predictor.predict(bodies), float(values[0]))
    raise ValueError(f"unknown variant '{variant}' (beam:W:A[:C], copy:F or rerank:A)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoding_variants", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a pointer-generator train output or bundle")
    parser.add_argument("--split", type=Path, required=True, help="a `stages split` output with heldout.csv")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--rows", type=int, default=0, help="score a random sample of this many rows per split")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="also score the training's validation rows (the last validation_split of train.csv)",
    )
    args = parser.parse_args(argv)

    from issue_titles.evaluate import choose_lead_words, read_test_split, score_systems, validation_rows
    from issue_titles.metrics import mean_words, rouge_l_scores
    from issue_titles.split import repository_of

    splits = {name: read_test_split(args.split, f"{name}.csv") for name in ("heldout", "test")}
    if args.validation:
        splits["validation"], why_not = validation_rows(args.split, args.model)
        if not splits["validation"]:
            parser.error(f"--validation: {why_not}")
    if args.rows:
        rng = np.random.default_rng(0)
        splits = {name: [rows[i] for i in sorted(rng.choice(len(rows), min(args.rows, len(rows)), replace=False))]
                  for name, rows in splits.items()}  # fmt: skip
    lead_k, _ = choose_lead_words(args.split)
    baselines = {}
    for name, rows in splits.items():  # the best baseline overall and per repository, as `stages evaluate` picks it
        if name == "validation":
            continue
        scored = score_systems(rows, [""] * len(rows), lead_k)
        baselines[name] = {"(all)": scored["best_baseline"]["rouge_l"]} | {
            repository: summary["best_baseline"]["rouge_l"]
            for repository, summary in scored.get("repositories", {}).items()
        }
    print(
        f"held-out: {len(splits['heldout'])} rows, best baseline {baselines['heldout']['(all)']:.3f}; "
        f"test: {len(splits['test'])} rows, best baseline {baselines['test']['(all)']:.3f}"
    )
    extra = " validation ROUGE-L | words validation |" if args.validation else ""
    print(
        "| variant | held-out ROUGE-L (margin) | smallest margin of one repository | test ROUGE-L | words held-out |"
        + extra
    )
    print("|---|---|---|---|---|" + "---|---|" * bool(extra))
    count, tested = len(splits["heldout"]), len(splits["heldout"]) + len(splits["test"])
    rows = splits["heldout"] + splits["test"] + splits.get("validation", [])
    for variant in args.variants.split(","):
        titles = titles_for(variant, args.model, [row.body for row in rows])  # one model load for every split
        scores = rouge_l_scores(titles, [row.issue_title for row in rows])
        by_repository = defaultdict(list)
        for row, value in zip(splits["heldout"], scores[:count], strict=True):
            by_repository[repository_of(row.issue_url)].append(value)
        held = float(np.mean(scores[:count]))
        smallest = min(((np.mean(values) - baselines["heldout"][repository], repository)
                        for repository, values in by_repository.items() if repository in baselines["heldout"]),
                       default=(held - baselines["heldout"]["(all)"], "(all)"))  # fmt: skip
        validation = f" {np.mean(scores[tested:]):.3f} | {mean_words(titles[tested:]):.2f} |" if extra else ""
        print(
            f"| {variant} | {held:.3f} ({held - baselines['heldout']['(all)']:+.3f}) | {smallest[0]:+.3f} "
            f"({smallest[1]}) | {np.mean(scores[count:tested]):.3f} | {mean_words(titles[:count]):.2f} |{validation}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
