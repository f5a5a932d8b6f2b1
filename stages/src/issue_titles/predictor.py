"""Load a trained model or a serving bundle and turn issue bodies into titles.

Loading reads only plain data — JSON vocabularies and hyper-parameters, HDF5 weights — and rebuilds the
network in code, so a bundle cannot run code on load. If the folder has a provenance.json (a `stages build`
bundle) it is checked first (`check_bundle`): a known bundle format, only regular files (no symlinks), no file that
provenance.json does not list, and every listed file matching its recorded sha256. Then model.json's format and
preprocess.json's text preparation must be the ones this code implements, and their lengths must agree, so a
bundle from another version is refused with one line instead of loading silently or failing inside TensorFlow.

`predict` is the fast path: text is encoded for the whole chunk at once, then one compiled TensorFlow function
runs the encoder once and the greedy decoder loop for every body together. Greedy decoding never emits padding,
the unknown-word token or the start marker, never ends before the first word, and never repeats a word (an
untrained or overfit decoder otherwise loops on its likeliest word: "rule rule rule"). `predict_reference` is the
tutorial's way — a model call per token per body — kept to prove the fast path gives the same titles.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.jsonio import read_json, read_vocabulary
from issue_titles.models import ModelConfig, POINTER_GENERATOR, build_model
from issue_titles.provenance import PROVENANCE, verify_bundle
from issue_titles.text import STANDARDIZATION, START, TextConfig, TextEncoder

MODEL_FORMAT = 1  # model.json's "format", as `stages train` writes it (train.FORMAT_VERSION)

UNK_ID = 1


class TitlePredictor:
    """A trained title model plus the text encoding it was trained with."""

    def __init__(self, model, encoder: TextEncoder, info: dict, source: Path | None = None) -> None:
        import tensorflow as tf

        self.model = model
        self.encoder = encoder
        self.info = info
        self.source = source
        self.config: ModelConfig = model.config
        self.max_steps = self.config.title_length - 1
        banned = np.zeros(self.config.output_size, dtype=bool)
        banned[[0, UNK_ID, encoder.start_id]] = True  # padding, unknown word and start marker are never output
        self._banned = banned
        self._banned_first = banned.copy()
        self._banned_first[encoder.end_id] = True  # no empty titles
        length = self.config.body_length
        self._greedy = tf.function(
            self._greedy_ids,
            input_signature=[tf.TensorSpec([None, length], tf.int32), tf.TensorSpec([None, length], tf.int32)],
        )

    @classmethod
    def load(cls, folder: Path | str, verify: bool = True) -> "TitlePredictor":
        """Rebuild from a `stages train` output or a `stages build` bundle (checked if it has provenance.json)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise StageError("model folder does not exist", path=folder)
        if verify and (folder / PROVENANCE).is_file():
            verify_bundle(folder)
        info, config, text_config = read_description(folder)
        encoder = TextEncoder(
            read_vocabulary(folder / "body_vocab.json"), read_vocabulary(folder / "title_vocab.json"), text_config
        )
        if (len(encoder.body_vocab), len(encoder.title_vocab)) != (config.body_vocab_size, config.title_vocab_size):
            raise StageError("vocabulary sizes do not match model.json", path=folder / "model.json")
        try:
            model = build_model(config)  # only the architectures in models.py; nothing named in the file is imported
        except (KeyError, TypeError, ValueError) as error:
            raise StageError(f"cannot build the model described: {error}", path=folder / "model.json") from None
        weights = folder / "model.weights.h5"
        if not weights.is_file():
            raise StageError("file not found", path=weights)
        try:
            model.load_weights(weights)
        except (ValueError, OSError) as error:
            raise StageError(f"weights do not fit the model described in model.json: {error}", path=weights) from None
        return cls(model, encoder, info, folder)

    @classmethod
    def load_bundle(cls, folder: Path | str) -> "TitlePredictor":
        """Load a `stages build` bundle for serving: provenance.json must be there, so no file goes unverified.

        `load` accepts a training output too (it has no provenance); a server must not, or deleting
        provenance.json would be enough to serve changed weights.
        """
        check_bundle(folder)
        return cls.load(folder, verify=False)

    @property
    def architecture(self) -> str:
        return self.config.architecture

    def predict(self, bodies: Sequence[str], chunk_size: int = 512) -> list[str]:
        """One title per body, in order; bodies are decoded together, `chunk_size` at a time."""
        bodies = _check_bodies(bodies)
        titles: list[str] = []
        for start in range(0, len(bodies), chunk_size):
            encoded = self.encoder.encode_bodies(bodies[start : start + chunk_size])
            ids = self._greedy(encoded["body"], encoded["body_copy"]).numpy()
            titles.extend(self.encoder.decode(ids, encoded["body_tokens"]))
        return titles

    def predict_reference(self, bodies: Sequence[str]) -> list[str]:
        """The tutorial-style loop: encode one body, then one model call per generated token."""
        import tensorflow as tf

        bodies = _check_bodies(bodies)
        titles = []
        for body in bodies:
            encoded = self.encoder.encode_bodies([body])
            memory, state = self.model.encode(
                tf.constant(encoded["body"]), tf.constant(encoded["body_copy"]), training=False
            )
            token, ids = self.encoder.start_id, []
            for step in range(self.max_steps):
                scores, state = self.model.step(tf.constant([token], dtype=tf.int32), memory, state)
                banned = (self._banned_first if step == 0 else self._banned).copy()
                banned[ids] = True  # a title does not repeat a word
                token = int(np.argmax(np.where(banned, -1.0, np.asarray(scores)[0])))
                ids.append(token)
                if token == self.encoder.end_id:
                    break
                if token >= self.config.title_vocab_size:
                    token = UNK_ID  # a copied body word enters the decoder as "unknown", as in training
            titles.extend(self.encoder.decode(np.array([ids]), encoded["body_tokens"]))
        return titles

    def _greedy_ids(self, body, body_copy):
        """Compiled: encode once, then argmax-decode every body in lock-step until all have ended."""
        import tensorflow as tf

        memory, state = self.model.encode(body, body_copy, training=False)
        batch = tf.shape(body)[0]
        token = tf.fill([batch], tf.constant(self.encoder.start_id, tf.int32))
        finished = tf.zeros([batch], tf.bool)
        output = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        banned, banned_first = tf.constant(self._banned), tf.constant(self._banned_first)
        end_id = tf.constant(self.encoder.end_id, tf.int32)
        vocab_size = tf.constant(self.config.title_vocab_size, tf.int32)
        used = tf.zeros([batch, self.config.output_size], tf.bool)
        for step in tf.range(self.max_steps):
            scores, state = self.model.step(token, memory, state)
            mask = tf.logical_or(tf.cond(step == 0, lambda: banned_first, lambda: banned)[None, :], used)
            scores = tf.where(mask, tf.constant(-1.0, scores.dtype), scores)
            chosen = tf.argmax(scores, axis=-1, output_type=tf.int32)
            chosen = tf.where(finished, end_id, chosen)
            output = output.write(step, chosen)
            used = tf.logical_or(used, tf.one_hot(chosen, self.config.output_size, on_value=True, off_value=False))
            finished = tf.logical_or(finished, tf.equal(chosen, end_id))
            token = tf.where(chosen >= vocab_size, tf.constant(UNK_ID, tf.int32), chosen)
            if tf.reduce_all(finished):
                break
        return tf.transpose(output.stack())

    def describe(self) -> dict:
        """Short facts for logs and serving metadata."""
        return {
            "architecture": self.architecture,
            "title_vocab_size": self.config.title_vocab_size,
            "body_vocab_size": self.config.body_vocab_size,
            "max_title_tokens": self.max_steps - 1,
            "start_token": START,
            "copies_from_body": self.architecture == POINTER_GENERATOR,
        }


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


def read_description(folder: Path) -> tuple[dict, ModelConfig, TextConfig]:
    """model.json and preprocess.json, checked against the formats this code implements and against each other."""
    info = read_json(folder / "model.json")
    if not isinstance(info, dict):
        raise StageError("is not a JSON object", path=folder / "model.json")
    version = info.get("format")
    if version != MODEL_FORMAT or isinstance(version, bool):
        raise StageError(
            f"model format {version} is not one this code reads ({MODEL_FORMAT}); retrain with this version",
            path=folder / "model.json",
        )
    try:
        config = ModelConfig.from_dict(info["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StageError(f"incomplete model description: {error}", path=folder / "model.json") from None
    text_fields = read_json(folder / "preprocess.json")
    if not isinstance(text_fields, dict):
        raise StageError("is not a JSON object", path=folder / "preprocess.json")
    preparation = text_fields.get("standardization")
    if preparation != STANDARDIZATION:
        raise StageError(
            f"text was prepared with {preparation!r}, this code prepares it with {STANDARDIZATION!r}; the model would "
            "see different tokens: retrain with this version",
            path=folder / "preprocess.json",
        )
    try:
        text_config = TextConfig(
            **{key: text_fields[key] for key in ("body_vocab_size", "body_length", "title_vocab_size", "title_length")}
        )
    except (KeyError, TypeError) as error:
        raise StageError(f"incomplete text description: {error}", path=folder / "preprocess.json") from None
    for key in ("body_length", "title_length"):
        if getattr(text_config, key) != getattr(config, key):
            raise StageError(
                f"{key} {getattr(text_config, key)} does not match the model's {getattr(config, key)} (model.json); "
                "the two files come from different runs",
                path=folder / "preprocess.json",
            )
    return info, config, text_config


def _check_bodies(bodies: Sequence[str]) -> list[str]:
    if isinstance(bodies, str | bytes):
        raise TypeError("bodies must be a list of strings, not a single string")
    bodies = list(bodies)
    for index, body in enumerate(bodies):
        if not isinstance(body, str):
            raise TypeError(f"bodies[{index}] must be a string, got {type(body).__name__}")
    return bodies
