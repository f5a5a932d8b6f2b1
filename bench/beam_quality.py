"""`python -m bench.beam_quality --model FOLDER`: what beam width and length penalty do to titles and time.

For each `width:alpha` pair, the titles of the same random bodies of the vendored data set: seconds (wall and CPU),
mean words (against the real titles'), ROUGE-L, BLEU and the share of the most frequent title. The table behind the
defaults in stages/README.md ("Decoding"); `--threads 1` gives the most repeatable seconds on shared cores.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_CONFIGS = "1:0,2:1,2:2,3:2,4:2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.beam_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a train output or a bundle")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"width:alpha pairs (default {DEFAULT_CONFIGS})")
    parser.add_argument("--bodies", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from bench.common import DATA_SET
    from issue_titles.csvio import read_issue_file
    from issue_titles.metrics import score
    from issue_titles.predictor import TitlePredictor

    issues = read_issue_file(DATA_SET)
    chosen = np.random.default_rng(args.seed).choice(len(issues), size=min(args.bodies, len(issues)), replace=False)
    bodies = [issues[index].body for index in chosen]
    references = [issues[index].issue_title for index in chosen]
    print(f"{len(bodies)} bodies; real titles: {np.mean([len(title.split()) for title in references]):.2f} words")
    print("| width | alpha | wall s | CPU s | mean words | ROUGE-L | BLEU | most frequent title |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in args.configs.split(","):
        width, alpha = pair.split(":")
        predictor = TitlePredictor.load(args.model, beam_width=int(width), length_penalty=float(alpha))
        predictor.predict(bodies[:64])  # compile
        started, cpu = time.perf_counter(), time.process_time()
        titles = predictor.predict(bodies)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        scores = score(titles, references)
        top = max(titles.count(title) for title in set(titles)) / len(titles)
        words = np.mean([len(title.split()) for title in titles])
        print(f"| {width} | {alpha} | {wall:.2f} | {cpu:.2f} | {words:.2f} | {scores['rouge_l']:.4f} | "
              f"{scores['bleu']:.2f} | {top:.1%} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
