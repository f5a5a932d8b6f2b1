"""The map half of pre-processing: encode each split shard with the vocabulary step's files, one datum per shard.

`stages pre_process --input SPLIT --vocabulary VOCAB --output OUT` writes `OUT/<shard>/` for every shard of SPLIT
(one under Pachyderm's glob `/*`): the train arrays of `stages pre_process`, `keys.json` (each row's key, so train
can keep a row repeated across files once) and `shard.json`. A shard whose train.csv and vocabulary did not change
is the same datum as before: Pachyderm (and localpach) skip it and reuse its output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.jsonio import read_vocabulary, write_json
from issue_titles.preprocess import ARRAYS
from issue_titles.shards import keys_of, shard_dirs
from issue_titles.text import TextEncoder
from issue_titles.vocabulary import read_text_config, vocab_dir


def encode_shard(shard: Path, output_dir: Path, encoder: TextEncoder) -> dict:
    report = ReadReport()
    issues = read_issue_file(shard / "train.csv", report, label=f"{shard.name}/train.csv")
    config = encoder.config
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    grams: list[np.ndarray] = []
    for start in range(0, len(issues), 2048):
        part = issues[start : start + 2048]
        encoded = encoder.encode_bodies([i.body for i in part])
        titles = encoder.encode_titles([i.issue_title for i in part], encoded["body_tokens"])
        arrays["train_body"].append(encoded["body"])
        arrays["train_body_copy"].append(encoded["body_copy"])
        grams.append(encoded["body_grams"])
        arrays["train_title"].append(titles["title"])
        arrays["train_title_copy"].append(titles["title_copy"])
    empty = {
        "train_body": (0, config.body_length),
        "train_body_copy": (0, config.body_length),
        "train_title": (0, config.title_length),
        "train_title_copy": (0, config.title_length),
    }
    summary = {"shard": shard.name, "rows": len(issues), "skipped": dict(report.skipped)}
    with atomic_output_dir(Path(output_dir) / shard.name, step="pre_process", inputs=[shard]) as staging:
        for name, parts in arrays.items():
            array = np.concatenate(parts) if parts else np.zeros(empty[name])
            np.save(staging / f"{name}.npy", array.astype(np.int32), allow_pickle=False)
        if config.trigrams_per_token:
            small = config.trigram_buckets <= np.iinfo(np.int16).max + 1
            array = np.concatenate(grams) if grams else np.zeros((0, config.body_length, config.trigrams_per_token))
            np.save(staging / "train_body_grams.npy", array.astype(np.int16 if small else np.int32), allow_pickle=False)
        write_json(staging / "keys.json", keys_of(issues))
        write_json(staging / "shard.json", summary)
    return summary


def run_encode_shards(split_dir: Path, vocabulary: Path, output_dir: Path) -> dict:
    """Encode every shard of `split_dir` with the vocabulary step's files."""
    shards = shard_dirs(split_dir, "train.csv")
    if not shards:
        raise StageError("no split shard (a folder holding train.csv) in the input", path=split_dir)
    folder = vocab_dir(vocabulary)
    config = read_text_config(vocabulary)
    encoder = TextEncoder(
        read_vocabulary(folder / "body_vocab.json"), read_vocabulary(folder / "title_vocab.json"), config
    )
    results = [encode_shard(shard, output_dir, encoder) for shard in shards]
    return {"shards": [r["shard"] for r in results], "rows": sum(r["rows"] for r in results)}
