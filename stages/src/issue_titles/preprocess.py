"""`stages pre_process`: fit the body and title vocabularies on train.csv and encode it as int32 arrays."""

from dataclasses import replace
from pathlib import Path

import numpy as np

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json
from issue_titles.text import TextConfig, TextEncoder, clean_body, fit_vocabulary, standardize, title_with_markers

ARRAYS = ("train_body", "train_title", "train_body_copy", "train_title_copy")


def run_preprocess(input_dir: Path, output_dir: Path, config: TextConfig = TextConfig()) -> dict:
    import tensorflow as tf

    source = Path(input_dir) / "train.csv"
    if not source.is_file():
        raise StageError("train.csv not found (expected the output of `stages split`)", path=source)
    for name in ("body_vocab_size", "title_vocab_size"):
        if getattr(config, name) < 4:
            raise StageError(f"--{name.replace('_', '-')} must be at least 4, got {getattr(config, name)}")
    if config.body_length < 1 or config.title_length < 3:
        raise StageError("--body-length must be >= 1 and --title-length >= 3 (start and end markers)")
    if config.trigrams_per_token < 0 or (config.trigrams_per_token and config.trigram_buckets < 2):
        raise StageError("--trigrams-per-token must be >= 0, and --trigram-buckets >= 2 when there are trigrams")
    report = ReadReport()
    issues = read_issue_file(source, report, label="train.csv")
    if not issues:
        raise StageError(f"no usable rows (skipped: {dict(report.skipped)})", path=source)
    bodies = [issue.body for issue in issues]
    titles = [issue.issue_title for issue in issues]
    standardized_bodies = [
        text.decode("utf-8") for text in standardize(tf.constant([clean_body(body) for body in bodies])).numpy()
    ]
    marked_titles = title_with_markers(standardize(tf.constant(titles)), config.title_length)
    body_vocab = fit_vocabulary(standardized_bodies, config.body_vocab_size)
    title_vocab = fit_vocabulary([text.decode("utf-8") for text in marked_titles.numpy()], config.title_vocab_size)
    # Record the sizes actually reached: a small corpus gives a vocabulary smaller than the maximum.
    config = replace(config, body_vocab_size=len(body_vocab), title_vocab_size=len(title_vocab),
                     trigram_buckets=config.trigram_buckets if config.trigrams_per_token else 0)  # fmt: skip
    encoder = TextEncoder(body_vocab, title_vocab, config)
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    grams: list[np.ndarray] = []
    for start in range(0, len(issues), 2048):
        encoded = encoder.encode_bodies(bodies[start : start + 2048])
        titles_encoded = encoder.encode_titles(titles[start : start + 2048], encoded["body_tokens"])
        arrays["train_body"].append(encoded["body"])
        arrays["train_body_copy"].append(encoded["body_copy"])
        grams.append(encoded["body_grams"])
        arrays["train_title"].append(titles_encoded["title"])
        arrays["train_title_copy"].append(titles_encoded["title_copy"])
    title_copy = np.concatenate(arrays["train_title_copy"])
    summary = config.as_dict() | {
        "rows": len(issues),
        "skipped": dict(report.skipped),
        "start_token": encoder.title_vocab[encoder.start_id],
        "end_token": encoder.title_vocab[encoder.end_id],
        "title_tokens_copied_from_body": int((title_copy >= len(title_vocab)).sum()),
        "title_tokens_unknown": int((title_copy == 1).sum()),
    }
    with atomic_output_dir(output_dir, step="pre_process", inputs=[input_dir]) as staging:
        write_json(staging / "body_vocab.json", body_vocab)
        write_json(staging / "title_vocab.json", title_vocab)
        write_json(staging / "preprocess.json", summary)
        for name, parts in arrays.items():
            np.save(staging / f"{name}.npy", np.concatenate(parts).astype(np.int32), allow_pickle=False)
        if config.trigrams_per_token:  # (rows, body_length, trigrams_per_token); int16 while the ids fit, half the disk
            small = config.trigram_buckets <= np.iinfo(np.int16).max + 1
            np.save(staging / "train_body_grams.npy", np.concatenate(grams).astype(np.int16 if small else np.int32),
                    allow_pickle=False)  # fmt: skip
    return summary
