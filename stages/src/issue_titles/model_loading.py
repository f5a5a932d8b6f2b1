"""Read a trained model or a serving bundle from its folder, checking every file before TensorFlow sees it.

Loading reads only plain data — JSON vocabularies and hyper-parameters, HDF5 weights — and rebuilds the network in
code, so a bundle cannot run code on load. If the folder has a provenance.json (a `stages build` bundle) it is
checked first (`check_bundle`): a known bundle format, only regular files (no symlinks), no file that provenance.json
does not list, and every listed file matching its recorded sha256. Then model.json's format and preprocess.json's
text preparation must be the ones this code implements, and their lengths must agree, so a bundle from another
version is refused with one line instead of loading silently or failing inside TensorFlow.
"""

from pathlib import Path
from typing import Any

from issue_titles.contract import (
    BODY_VOCAB,
    MODEL_FORMAT,
    MODEL_INFO,
    PREPROCESS,
    PROVENANCE,
    TITLE_VOCAB,
    WEIGHTS_FILE,
)
from issue_titles.decoding_options import DECODING_DEFAULTS, check_decoding, with_defaults
from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.jsonio import read_json, read_vocabulary
from issue_titles.model_config import ModelConfig
from issue_titles.provenance import verify_bundle
from issue_titles.text import STANDARDIZATION, TextConfig, TextEncoder, trigram_settings


def check_bundle(folder: Path | str) -> None:
    """Everything `load_bundle` refuses, without TensorFlow: `stages serve` runs it before starting the server, so
    a changed bundle exits 4 (TamperedBundleError) and one from another version 2, each with one line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError("model bundle folder not found", path=folder)
    if not (folder / PROVENANCE).is_file():
        raise TamperedBundleError(
            f"{PROVENANCE} is missing, so the bundle's files cannot be verified; serve what `stages build` wrote",
            path=folder,
        )
    verify_bundle(folder)
    read_description(folder)


def read_model(folder: Path) -> tuple[Any, TextEncoder, dict]:
    """The network rebuilt from model.json with its weights loaded, the text encoder from its vocabularies, and
    model.json itself; each file checked, a mismatch refused naming the file."""
    info, config, text_config = read_description(folder)
    encoder = TextEncoder(read_vocabulary(folder / BODY_VOCAB), read_vocabulary(folder / TITLE_VOCAB), text_config)
    if (len(encoder.body_vocab), len(encoder.title_vocab)) != (config.body_vocab_size, config.title_vocab_size):
        raise StageError(f"vocabulary sizes do not match {MODEL_INFO}", path=folder / MODEL_INFO)
    from issue_titles.models import build_model  # TensorFlow: only once the files passed every check

    try:
        model = build_model(config)  # only the architectures in models.py; nothing named in the file is imported
    except (KeyError, TypeError, ValueError) as error:
        raise StageError(f"cannot build the model described: {error}", path=folder / MODEL_INFO) from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise StageError("file not found", path=weights)
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as error:
        raise StageError(f"weights do not fit the model described in model.json: {error}", path=weights) from None
    return model, encoder, info


def read_description(folder: Path) -> tuple[dict, ModelConfig, TextConfig]:
    """model.json and preprocess.json, checked against the formats this code implements and against each other."""
    info = read_json(folder / MODEL_INFO)
    if not isinstance(info, dict):
        raise StageError("is not a JSON object", path=folder / MODEL_INFO)
    version = info.get("format")
    if version != MODEL_FORMAT or isinstance(version, bool):
        raise StageError(
            f"model format {version} is not one this code reads ({MODEL_FORMAT}); retrain with this version",
            path=folder / MODEL_INFO,
        )
    try:
        config = ModelConfig.from_dict(info["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StageError(f"incomplete model description: {error}", path=folder / MODEL_INFO) from None
    text_config = read_text_config(folder)
    for key in ("body_length", "title_length", "trigrams_per_token", "trigram_buckets"):
        if getattr(text_config, key) != getattr(config, key):
            raise StageError(
                f"{key} {getattr(text_config, key)} does not match the model's {getattr(config, key)} (model.json); "
                "the two files come from different runs",
                path=folder / PREPROCESS,
            )
    return info, config, text_config


def read_text_config(folder: Path) -> TextConfig:
    """preprocess.json (a pre_process output, or the copy in a model folder), checked against this code's text
    preparation: a model or a screen fed differently prepared tokens would be wrong without any error."""
    text_fields = read_json(folder / PREPROCESS)
    if not isinstance(text_fields, dict):
        raise StageError("is not a JSON object", path=folder / PREPROCESS)
    preparation = text_fields.get("standardization")
    if preparation != STANDARDIZATION:
        raise StageError(
            f"text was prepared with {preparation!r}, this code prepares it with {STANDARDIZATION!r}; the model would "
            "see different tokens: retrain with this version",
            path=folder / PREPROCESS,
        )
    try:
        per_token, buckets = trigram_settings(text_fields)  # written before trigrams existed: none, as it was trained
    except ValueError as error:
        raise StageError(str(error), path=folder / PREPROCESS) from None
    try:
        sizes = {
            key: text_fields[key] for key in ("body_vocab_size", "body_length", "title_vocab_size", "title_length")
        }
        return TextConfig(**sizes, trigrams_per_token=per_token, trigram_buckets=buckets)
    except (KeyError, TypeError) as error:
        raise StageError(f"incomplete text description: {error}", path=folder / PREPROCESS) from None


def recorded_decoding(folder: Path) -> dict:
    """The decoding a bundle was evaluated and gated with (provenance.json "decoding"); {} for a training output or a
    bundle from before it was recorded. Checked like given options, naming the file when it is wrong."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        return {}
    recorded = read_json(path).get("decoding") or {}
    if not isinstance(recorded, dict):
        raise StageError("'decoding' must be an object", path=path)
    if recorded and "copy_bias" not in recorded:
        recorded["copy_bias"] = 1.0  # recorded before the copy bias existed: built and gated decoding without one
    recorded = {key: recorded[key] for key in DECODING_DEFAULTS if key in recorded}
    try:
        check_decoding(**with_defaults(recorded), max_steps=None)
    except ValueError as error:
        raise StageError(f"recorded decoding: {error}", path=path) from None
    return recorded
