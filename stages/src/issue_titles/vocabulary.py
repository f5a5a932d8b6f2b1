"""Map, then a small reduce: the vocabularies as their own step, kept byte for byte until they drift.

`stages vocabulary` reads every split shard's train.csv (each row once), fits fresh vocabularies of the configured
sizes, and compares them with the step's previous output (`issue_titles.previous`). Drift is the share of the
token mass the fresh vocabulary covers that the current one misses:

    drift = (coverage(fresh) - coverage(current)) / coverage(fresh)

where coverage(V) is the share of all token occurrences of the current training bodies (titles) that V holds; the
larger of the body and title drift counts. While drift stays at or below the threshold (DRIFT_THRESHOLD, chosen in
stages/README.md "Incremental updates") the step writes the previous files again, byte for byte: every encoded
shard downstream keeps its datum hash and is skipped, and train may warm-start. Above it, the fresh vocabularies
replace them and everything downstream re-runs (a full retrain: the ids changed).

The vocabulary files live under `vocab/` (the datum the encoders and train read with glob `/vocab`); the report
with the drift figures lives beside it, so a report that changes does not change their datum.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, read_vocabulary, write_json
from issue_titles.shards import merge_side, shard_dirs
from issue_titles.text import TextConfig, clean_body, fit_vocabulary, standardize, title_with_markers

VOCAB_DIR = "vocab"
VOCAB_FILES = ("body_vocab.json", "title_vocab.json", "text_config.json", "requested.json")
DRIFT_THRESHOLD = 0.001


def coverage(counts: Counter, vocabulary: list[str]) -> float:
    total = sum(counts.values())
    return sum(counts[token] for token in set(vocabulary[2:])) / total if total else 1.0


def drift(counts: Counter, current: list[str], fresh: list[str]) -> float:
    """Share of the token mass the fresh vocabulary covers that the current one misses (0 when it misses none)."""
    best = coverage(counts, fresh)
    return max(0.0, (best - coverage(counts, current)) / best) if best else 0.0


def vocab_dir(folder: Path) -> Path:
    """The vocabulary step's files: `<folder>/vocab/` (its output, or Pachyderm's /pfs/vocabulary with glob /vocab)."""
    folder = Path(folder)
    return folder / VOCAB_DIR if (folder / VOCAB_DIR / "text_config.json").is_file() else folder


def read_text_config(folder: Path) -> TextConfig:
    fields = read_json(vocab_dir(folder) / "text_config.json")
    try:
        return TextConfig(**fields)
    except TypeError as error:
        raise StageError(f"not a text configuration: {error}", path=vocab_dir(folder) / "text_config.json") from None


def _standardized(config: TextConfig, bodies: list[str], titles: list[str]) -> tuple[list[str], list[str]]:
    import tensorflow as tf

    body_texts = [t.decode("utf-8") for t in standardize(tf.constant([clean_body(b) for b in bodies])).numpy()]
    marked = title_with_markers(standardize(tf.constant(titles)), config.title_length)
    return body_texts, [t.decode("utf-8") for t in marked.numpy()]


def run_vocabulary(
    split_dir: Path,
    output_dir: Path,
    config: TextConfig = TextConfig(),
    previous: Path | None = None,
    threshold: float = DRIFT_THRESHOLD,
) -> dict:
    """Fit, compare with `previous` (a former output of this step, or None), write `vocab/` and `report.json`."""
    if not 0.0 <= threshold < 1.0:
        raise StageError(f"--drift-threshold must be in [0, 1), got {threshold}")
    if not shard_dirs(split_dir, "train.csv"):
        raise StageError("no split shard (a folder holding train.csv) in the input", path=split_dir)
    merged = merge_side(split_dir, "train")
    if len(merged.issues) < 2:
        raise StageError(f"need at least 2 training rows across the shards, got {len(merged.issues)}", path=split_dir)
    bodies, titles = _standardized(config, [i.body for i in merged.issues], [i.issue_title for i in merged.issues])
    fresh = {
        "body": fit_vocabulary(bodies, config.body_vocab_size),
        "title": fit_vocabulary(titles, config.title_vocab_size),
    }
    counts = {
        "body": Counter(t for text in bodies for t in text.split()),
        "title": Counter(t for text in titles for t in text.split()),
    }
    reached = replace(
        config,
        body_vocab_size=len(fresh["body"]),
        title_vocab_size=len(fresh["title"]),
        trigram_buckets=config.trigram_buckets if config.trigrams_per_token else 0,
    )
    report: dict = {
        "rows": len(merged.issues),
        "repeated_across_files": merged.repeated_across_files,
        "threshold": threshold,
        "drift": None,
        "kept_previous": False,
    }
    keep = None
    if previous is not None and all((vocab_dir(previous) / name).is_file() for name in VOCAB_FILES):
        old_dir = vocab_dir(previous)
        same_settings = read_json(old_dir / "requested.json") == config.as_dict()
        old = {
            "body": read_vocabulary(old_dir / "body_vocab.json"),
            "title": read_vocabulary(old_dir / "title_vocab.json"),
        }
        values = {side: round(drift(counts[side], old[side], fresh[side]), 6) for side in ("body", "title")}
        report["drift"] = values
        report["same_settings"] = same_settings
        if same_settings and max(values.values()) <= threshold:
            keep = old_dir
    with atomic_output_dir(output_dir, step="vocabulary", inputs=[split_dir]) as staging:
        target = staging / VOCAB_DIR
        target.mkdir()
        if keep is not None:
            report["kept_previous"] = True
            for name in VOCAB_FILES:
                shutil.copyfile(keep / name, target / name)
        else:
            write_json(target / "body_vocab.json", fresh["body"])
            write_json(target / "title_vocab.json", fresh["title"])
            write_json(target / "text_config.json", reached.as_dict())
            write_json(target / "requested.json", config.as_dict())
        write_json(staging / "report.json", report)
    return report
