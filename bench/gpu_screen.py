"""`python -m bench.gpu_screen export|score`: the two ends of the GPU screening of model variants (stages/README.md).

Training one variant of the default model takes ~16 minutes on the 2 CPU cores here, so testing a dozen ideas that
way takes a day. A GPU trains one in about three minutes, but the GPU machines lent to this project carry PyTorch,
not TensorFlow (whose wheel is too large to carry there), so `bench/gpu_screen_port.py` re-implements the default
pointer-generator in PyTorch and trains variants of it side by side. This module prepares its input and scores its
output with the project's own text encoding and metrics, so the numbers are comparable with `stages evaluate`'s:

    python -m bench.gpu_screen export --split runs/split --pre-process runs/pre_process --output .gpu
    python bench/gpu_screen_port.py --data .gpu --output OUT          # on the GPU machine
    python -m bench.gpu_screen score --split runs/split --pre-process runs/pre_process \\
        --baselines runs/evaluate/metrics.json OUT/*.npz

`export` writes `data.npz` (pre_process's training arrays and the encoded test and held-out bodies, int16) and
`ngrams.npz` (every body token as an id into a table of its hashed character trigrams, for the subword variant).
The port decodes greedily; `score` turns its ids back into titles and reports ROUGE-L on the test split and the
held-out repositories, the margin over the best extractive baseline read from `stages evaluate`'s metrics.json
(overall and the smallest per repository), and mean title length. A screen ranks ideas; a variant worth adopting is
then built into `stages` and trained on the CPU like any other (its row in the variants table says which).
"""

import argparse
import json
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

SPLITS = ("test", "heldout")
GRAMS_PER_TOKEN = 10  # the first 10 character trigrams of "<token>"
GRAM_BUCKETS = 30_000  # hashed trigram ids 1..GRAM_BUCKETS-1; 0 pads


def _encoder(pre_process: Path):
    from issue_titles.jsonio import read_vocabulary
    from issue_titles.predictor import read_text_config
    from issue_titles.text import TextEncoder

    return TextEncoder(
        read_vocabulary(pre_process / "body_vocab.json"),
        read_vocabulary(pre_process / "title_vocab.json"),
        read_text_config(pre_process),
    )


def _issues(split: Path, name: str):
    from issue_titles.evaluate import read_test_split

    return read_test_split(split, f"{name}.csv")


def trigram_ids(token: str) -> list[int]:
    """Hashed character trigrams of `<token>` (fastText-style subword pieces), stable across runs (CRC-32)."""
    marked = f"<{token}>"
    grams = [marked[index : index + 3] for index in range(max(1, len(marked) - 2))][:GRAMS_PER_TOKEN]
    return [1 + zlib.crc32(gram.encode("utf-8")) % (GRAM_BUCKETS - 1) for gram in grams]


def export(split: Path, pre_process: Path, output: Path) -> dict:
    """data.npz and ngrams.npz for the port; returns their arrays' shapes."""
    encoder = _encoder(pre_process)
    data = {}
    for name in ("train_body", "train_body_copy", "train_title", "train_title_copy"):
        array = np.load(pre_process / f"{name}.npy")
        if array.max(initial=0) > np.iinfo(np.int16).max:
            raise SystemExit(f"{name}.npy holds ids above int16; the export assumes vocabularies under 32,768")
        data[name] = array.astype(np.int16)
    tokens = {"train": encoder.encode_bodies([issue.body for issue in _issues(split, "train")])}
    if not np.array_equal(tokens["train"]["body"], np.load(pre_process / "train_body.npy")):
        raise SystemExit("train.csv does not encode to pre_process's train_body.npy: pass the matching folders")
    for name in SPLITS:
        tokens[name] = encoder.encode_bodies([issue.body for issue in _issues(split, name)])
        data[f"{name}_body"] = tokens[name]["body"].astype(np.int16)
        data[f"{name}_body_copy"] = tokens[name]["body_copy"].astype(np.int16)
    data["meta"] = np.array(
        [encoder.title_vocab_size, encoder.start_id, encoder.end_id, len(encoder.body_vocab)], dtype=np.int32
    )
    token_ids: dict[bytes, int] = {b"": 0}
    grams = {
        f"{name}_gid": np.array(
            [token_ids.setdefault(token, len(token_ids)) for token in encoded["body_tokens"].ravel()], dtype=np.int32
        ).reshape(encoded["body_tokens"].shape)
        for name, encoded in tokens.items()
    }
    table = np.zeros((len(token_ids), GRAMS_PER_TOKEN), dtype=np.int16)
    for token, index in token_ids.items():
        if token:
            ids = trigram_ids(token.decode("utf-8", errors="replace"))
            table[index, : len(ids)] = ids
    grams["gram_table"] = table
    grams["gram_buckets"] = np.array(GRAM_BUCKETS, dtype=np.int32)  # the port sizes its trigram embedding by it
    output.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output / "data.npz", **data)
    np.savez_compressed(output / "ngrams.npz", **grams)
    return {name: array.shape for name, array in (data | grams).items()}


def score(split: Path, pre_process: Path, baselines: Path, results: list[Path]) -> list[dict]:
    """One row per result file: ROUGE-L test / held-out, margins over metrics.json's best baselines, mean words."""
    from issue_titles.evaluate import repository_of
    from issue_titles.metrics import rouge_l_scores

    encoder = _encoder(pre_process)
    metrics = json.loads(baselines.read_text(encoding="utf-8"))
    best = metrics["heldout"]["best_baseline"]["rouge_l"]
    best_of = {name: row["best_baseline"]["rouge_l"] for name, row in metrics["heldout"]["repositories"].items()}
    issues = {name: _issues(split, name) for name in SPLITS}
    tokens = {name: encoder.encode_bodies([issue.body for issue in issues[name]])["body_tokens"] for name in SPLITS}
    rows = []
    for path in results:
        result = np.load(path)
        info = json.loads(str(result["info"]))
        row = {"variant": path.stem, "params": info["params"], "epochs": len(info["history"]),
               "seconds": round(info["seconds"]), "val_loss": round(min(h[2] for h in info["history"]), 4)}
        scores = {}
        for name in SPLITS:
            titles = encoder.decode(result[name], tokens[name])
            scores[name] = rouge_l_scores(titles, [issue.issue_title for issue in issues[name]])
            row[name] = round(float(np.mean(scores[name])), 4)
            row[f"{name}_words"] = round(float(np.mean([len(title.split()) for title in titles])), 2)
        groups = defaultdict(list)
        for issue, value in zip(issues["heldout"], scores["heldout"], strict=True):
            groups[repository_of(issue.issue_url)].append(value)
        row["margin"] = round(row["heldout"] - best, 4)
        row["min_repository_margin"] = round(min(float(np.mean(v)) - best_of[r] for r, v in groups.items()), 4)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    header = ("| variant | test | held-out (margin) | smallest margin of one repository | words held-out | epochs "
              "| parameters | GPU seconds |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['test']:.3f} | {row['heldout']:.3f} ({row['margin']:+.3f}) "
            f"| {row['min_repository_margin']:+.3f} | {row['heldout_words']:.2f} | {row['epochs']} "
            f"| {row['params'] / 1e6:.1f} M | {row['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_screen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("export", "score"):
        command = commands.add_parser(name)
        command.add_argument("--split", type=Path, required=True, help="`stages split` output")
        command.add_argument("--pre-process", type=Path, required=True, help="`stages pre_process` output")
    commands.choices["export"].add_argument("--output", type=Path, required=True)
    commands.choices["score"].add_argument("--baselines", type=Path, required=True,
                                           help="`stages evaluate`'s metrics.json (the extractive baselines)")
    commands.choices["score"].add_argument("results", type=Path, nargs="+", help="the port's NAME.npz files")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(json.dumps({name: list(shape) for name, shape in export(args.split, args.pre_process,
                                                                      args.output).items()}))
    else:
        print(markdown(score(args.split, args.pre_process, args.baselines, args.results)))


if __name__ == "__main__":
    main()
