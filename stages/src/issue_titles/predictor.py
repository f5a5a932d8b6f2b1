"""Load a trained model or a serving bundle and turn issue bodies into titles.

Loading reads only plain data — JSON vocabularies and hyper-parameters, HDF5 weights — and rebuilds the
network in code, so a bundle cannot run code on load. If the folder has a provenance.json (a `stages build`
bundle) it is checked first (`check_bundle`): a known bundle format, only regular files (no symlinks), no file that
provenance.json does not list, and every listed file matching its recorded sha256. Then model.json's format and
preprocess.json's text preparation must be the ones this code implements, and their lengths must agree, so a
bundle from another version is refused with one line instead of loading silently or failing inside TensorFlow.

`predict` is the fast path: text is encoded for the whole chunk at once, then one compiled TensorFlow function
runs the encoder once and the decoder loop for every body together. Decoding never emits padding, the unknown-word
token or the start marker, never ends before the first word (or before `min_length` words), and never repeats a
word within a title (an untrained or overfit decoder otherwise loops on its likeliest word: "rule rule rule").

`beam_width` 1 is greedy decoding (the argmax at every step). Wider, it is beam search with the GNMT length penalty
(Wu et al., 2016): a title's score is its summed log-probability divided by ((5 + length) / 6) ** length_penalty,
where length counts the ids emitted, the end marker included (it is a scored decision like any word). Greedy
titles are short (5.4 words against 6.9 for real ones) because every extra word costs probability; the penalty
divides that cost back out. Each step keeps the `beam_width` best unfinished hypotheses per body; a hypothesis that
takes the end marker leaves the beam, and only the best finished one per body (by normalised score) is kept. At the
end the best of that and the unfinished ones (normalised at their length) is the title. A chunk stops early once
no unfinished hypothesis of any body can still beat its body's best finished one (log-probabilities only fall and,
with a non-negative penalty, the divisor only grows).

`predict_reference` is the tutorial's way — a model call per token per body (per hypothesis, for beam search),
selection in numpy — kept to prove the fast path gives the same titles. Both paths break ties the same way (the
lower id within a hypothesis, then the lower beam, as `tf.math.top_k` does), sum and divide in float32, and take
their logs with one function (`_log_probabilities`).

Small batches — one body per request is what a server mostly sees — are dominated not by arithmetic but by the
cost of running a few hundred small TensorFlow ops per decoding step. With `compiled_batch_limit` set (the serving
loader sets it), a batch of up to that many bodies runs the same decoding function compiled by XLA, padded to the
next power of two so each size compiles once: 2.4x faster for one body (21.5 -> 8.9 ms), the same ids. Larger
batches keep the plain graph, which XLA barely beats there and which needs no compile per batch size.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from issue_titles.contract import (
    BODY_VOCAB,
    MODEL_FORMAT,
    MODEL_INFO,
    PREPROCESS,
    PROVENANCE,
    TITLE_VOCAB,
    WEIGHTS_FILE,
)
from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.jsonio import read_json, read_vocabulary
from issue_titles.models import POINTER_GENERATOR, ModelConfig, build_model
from issue_titles.provenance import verify_bundle
from issue_titles.text import STANDARDIZATION, START, TextConfig, TextEncoder, trigram_settings

UNK_ID = 1

# Measured on trained default models (stages/README.md, "Decoding"): GNMT's usual alpha 1 lets beam search settle on
# short generic titles (2.2 words, one title for 36% of bodies on a small model); 2 brings titles to about the real
# length on small and full-data models alike. Width 2 keeps 1,000 bodies under 3 s; 3 and 4 add little. `stages
# evaluate` and `build` choose the length penalty and copy bias per model on its validation rows (evaluate.py); these
# defaults apply where nothing was chosen or recorded.
DEFAULT_BEAM_WIDTH = 2
DEFAULT_LENGTH_PENALTY = 2.0  # GNMT's alpha; 0 ranks titles by their plain summed log-probability
DEFAULT_MIN_LENGTH = 0  # words before the end marker may be chosen; 0: only "not before the first word"
# The copy switch's odds x this at every step (pointer_generator; the tutorial's model does not copy: 1). Raised the
# validation rows' ROUGE-L of both the full-data default and the demo's small model (stages/README.md, "Decoding").
DEFAULT_COPY_BIAS = 1.6
# copy_bias None: the architecture's default (DEFAULT_COPY_BIAS, or 1 for a model that does not copy).
DECODING_DEFAULTS = {
    "beam_width": DEFAULT_BEAM_WIDTH,
    "length_penalty": DEFAULT_LENGTH_PENALTY,
    "min_length": DEFAULT_MIN_LENGTH,
    "copy_bias": None,
}
# Serving: batches of up to this many bodies decode through XLA (sizes 1, 2, 4, 8, 16: five compiles at load time).
SERVING_COMPILED_BATCH_LIMIT = 16
PROBABILITY_FLOOR = 1e-9  # tiny probabilities are floored before the log (beam search); exact zeros are impossible ids


class TitlePredictor:
    """A trained title model plus the text encoding it was trained with."""

    def __init__(
        self,
        model,
        encoder: TextEncoder,
        info: dict,
        source: Path | None = None,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        length_penalty: float = DEFAULT_LENGTH_PENALTY,
        min_length: int = DEFAULT_MIN_LENGTH,
        compiled_batch_limit: int = 0,
        copy_bias: float | None = None,
    ) -> None:
        import tensorflow as tf

        self.model = model
        self.encoder = encoder
        self.info = info
        self.source = source
        self.config: ModelConfig = model.config
        self.max_steps = self.config.title_length - 1
        self.beam_width, self.length_penalty, self.min_length, copy_bias = _check_decoding(
            beam_width, length_penalty, min_length, self.max_steps, copy_bias
        )
        copies = self.config.architecture == POINTER_GENERATOR
        if copy_bias is not None and copy_bias != 1.0 and not copies:
            raise ValueError(f"copy_bias {copy_bias} applies to the pointer_generator architecture only: the "
                             f"{self.config.architecture} model does not copy")  # fmt: skip
        self.copy_bias = copy_bias if copy_bias is not None else (DEFAULT_COPY_BIAS if copies else 1.0)
        if self.beam_width > self.config.output_size:
            raise ValueError(f"beam_width {self.beam_width} is wider than this model's {self.config.output_size} ids")
        banned = np.zeros(self.config.output_size, dtype=bool)
        banned[[0, UNK_ID, encoder.start_id]] = True  # padding, unknown word and start marker are never output
        self._banned = banned
        self._banned_first = banned.copy()
        self._banned_first[encoder.end_id] = True  # no empty titles (nor, with min_length, short ones)
        self._first_end_step = max(1, self.min_length)
        self._banned_alive = self._banned_first  # an unfinished hypothesis continues with a word, never the end
        # The length penalty of a title of n ids (index n), float32 as both decoders divide by it.
        lengths = np.arange(self.max_steps + 1, dtype=np.float64)
        self._penalty = (((5.0 + lengths) / 6.0) ** self.length_penalty).astype(np.float32)
        length = self.config.body_length
        signature = [tf.TensorSpec([None, length], tf.int32), tf.TensorSpec([None, length], tf.int32),
                     tf.TensorSpec([None, length, self.config.trigrams_per_token], tf.int32)]  # fmt: skip
        self._greedy = tf.function(self._greedy_ids, input_signature=signature)
        self._beam = tf.function(self._beam_ids, input_signature=signature)
        self.compiled_batch_limit = _check_batch_limit(compiled_batch_limit)
        # XLA compiles once per batch size it meets; _decode_ids only ever hands it powers of two.
        self._greedy_xla = tf.function(self._greedy_ids, input_signature=signature, jit_compile=True)
        self._beam_xla = tf.function(self._beam_ids, input_signature=signature, jit_compile=True)

    @classmethod
    def load(
        cls,
        folder: Path | str,
        verify: bool = True,
        beam_width: int | None = None,
        length_penalty: float | None = None,
        min_length: int | None = None,
        compiled_batch_limit: int = 0,
        copy_bias: float | None = None,
    ) -> "TitlePredictor":
        """Rebuild from a `stages train` output or a `stages build` bundle (checked if it has provenance.json).

        Decoding options left as None take the bundle's recorded ones (provenance.json "decoding": what build
        evaluated and gated), else the module defaults. Given ones are checked before any file is read, so a bad
        one fails fast with one line."""
        given = {
            "beam_width": beam_width,
            "length_penalty": length_penalty,
            "min_length": min_length,
            "copy_bias": copy_bias,
        }
        _check_decoding(**_with_defaults(given), max_steps=None)
        _check_batch_limit(compiled_batch_limit)  # an API argument: a ValueError, before the StageError wrapping below
        folder = Path(folder)
        if not folder.is_dir():
            raise StageError("model folder does not exist", path=folder)
        if verify and (folder / PROVENANCE).is_file():
            verify_bundle(folder)
        decoding = _with_defaults(given, recorded_decoding(folder))
        info, config, text_config = read_description(folder)
        encoder = TextEncoder(read_vocabulary(folder / BODY_VOCAB), read_vocabulary(folder / TITLE_VOCAB), text_config)
        if (len(encoder.body_vocab), len(encoder.title_vocab)) != (config.body_vocab_size, config.title_vocab_size):
            raise StageError(f"vocabulary sizes do not match {MODEL_INFO}", path=folder / MODEL_INFO)
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
        try:
            return cls(model, encoder, info, folder, compiled_batch_limit=compiled_batch_limit, **decoding)
        except ValueError as error:  # an option this model cannot take: too wide a beam, a copy bias but no copying
            raise StageError(str(error), path=folder) from None

    @classmethod
    def load_bundle(
        cls, folder: Path | str, compiled_batch_limit: int = SERVING_COMPILED_BATCH_LIMIT
    ) -> "TitlePredictor":
        """Load a `stages build` bundle for serving: provenance.json must be there, so no file goes unverified.

        `load` accepts a training output too (it has no provenance); a server must not, or deleting
        provenance.json would be enough to serve changed weights.
        """
        check_bundle(folder)
        return cls.load(folder, verify=False, compiled_batch_limit=compiled_batch_limit)

    def with_decoding(self, **options) -> "TitlePredictor":
        """The same model and text encoding, decoding with `options` changed (beam_width, length_penalty,
        min_length, copy_bias): no second load of the weights."""
        current = {key: getattr(self, key) for key in DECODING_DEFAULTS}
        return TitlePredictor(self.model, self.encoder, self.info, self.source,
                              compiled_batch_limit=self.compiled_batch_limit, **(current | options))  # fmt: skip

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def decoding(self) -> dict:
        """How titles are chosen, for metrics and logs."""
        return {
            "method": "greedy" if self.beam_width == 1 else "beam",
            "beam_width": self.beam_width,
            "length_penalty": self.length_penalty,
            "min_length": self.min_length,
            "copy_bias": self.copy_bias,
        }

    def predict(self, bodies: Sequence[str], chunk_size: int = 512) -> list[str]:
        """One title per body, in order; bodies are decoded together, `chunk_size` at a time."""
        bodies = _check_bodies(bodies)
        titles: list[str] = []
        for start in range(0, len(bodies), chunk_size):
            encoded = self.encoder.encode_bodies(bodies[start : start + chunk_size])
            ids = self._decode_ids(encoded["body"], encoded["body_copy"], encoded["body_grams"])
            titles.extend(self.encoder.decode(ids, encoded["body_tokens"]))
        return titles

    def _decode_ids(self, body: np.ndarray, body_copy: np.ndarray, body_grams: np.ndarray) -> np.ndarray:
        """The decoding function for this batch: XLA-compiled up to `compiled_batch_limit` bodies, padded to a power
        of two with copies of the last body (each body decodes independently), else the plain graph."""
        rows = len(body)
        if rows > self.compiled_batch_limit:
            decode = self._greedy if self.beam_width == 1 else self._beam
            return decode(body, body_copy, body_grams).numpy()
        padded = 1 << (rows - 1).bit_length()
        if padded > rows:
            body, body_copy, body_grams = (np.concatenate([array, np.repeat(array[-1:], padded - rows, axis=0)])
                                           for array in (body, body_copy, body_grams))  # fmt: skip
        decode = self._greedy_xla if self.beam_width == 1 else self._beam_xla
        return decode(body, body_copy, body_grams).numpy()[:rows]

    def warm_up(self, body: str = "warm up the decoder") -> None:
        """Compile every batch size a request can meet (the plain graph, and each XLA size up to the limit), so no
        request waits for a compile."""
        sizes = [1 << exponent for exponent in range(self.compiled_batch_limit.bit_length())]
        for size in sizes + [self.compiled_batch_limit + 1]:
            self.predict([body] * size)

    def predict_reference(self, bodies: Sequence[str]) -> list[str]:
        """The tutorial-style loop: encode one body, then one model call per generated token (and hypothesis)."""
        import tensorflow as tf

        bodies = _check_bodies(bodies)
        titles = []
        for body in bodies:
            encoded = self.encoder.encode_bodies([body])
            memory, state = self.model.encode(
                tf.constant(encoded["body"]),
                tf.constant(encoded["body_copy"]),
                tf.constant(encoded["body_grams"]),
                training=False,
            )
            if self.beam_width == 1:
                ids = self._greedy_reference_ids(memory, state)
            else:
                ids = self._beam_reference_ids(memory, state)
            titles.extend(self.encoder.decode(np.array([ids]), encoded["body_tokens"]))
        return titles

    def _greedy_reference_ids(self, memory, state) -> list[int]:
        import tensorflow as tf

        token, ids = self.encoder.start_id, []
        for step in range(self.max_steps):
            scores, state = self.model.step(tf.constant([token], dtype=tf.int32), memory, state, self.copy_bias)
            banned = (self._banned_first if step < self._first_end_step else self._banned).copy()
            banned[ids] = True  # a title does not repeat a word
            token = int(np.argmax(np.where(banned, -1.0, np.asarray(scores)[0])))
            ids.append(token)
            if token == self.encoder.end_id:
                break
            if token >= self.config.title_vocab_size:
                token = UNK_ID  # a copied body word enters the decoder as "unknown", as in training
        return ids

    def _beam_reference_ids(self, memory, state) -> list[int]:
        """One body's beam search, step by step: a model call per live hypothesis, selection in numpy.

        Mirrors `_beam_ids` operation for operation (the same float32 sums and divisions, the same log function,
        the same tie order: lower id within a hypothesis, lower beam across them), so the titles are the same."""
        import tensorflow as tf

        width, steps = self.beam_width, self.max_steps
        end_id, vocab_size = self.encoder.end_id, self.config.title_vocab_size
        ruled_out = np.float32(-1.0)
        scores = np.full(width, -np.inf, np.float32)
        scores[0] = 0.0  # the beams start as copies of one hypothesis: only the first may expand
        sequences = np.zeros((width, steps), np.int32)
        tokens, states = [self.encoder.start_id] * width, [state] * width
        best, best_sequence = np.float32(-np.inf), np.zeros(steps, np.int32)
        length = 0
        for step in range(steps):
            proposals = np.full((width, width), -np.inf, np.float32)
            proposed = np.zeros((width, width), np.int32)
            ending = np.full(width, -np.inf, np.float32)
            stepped = list(states)
            for beam in range(width):
                if scores[beam] == -np.inf:
                    continue  # a dead hypothesis (fewer possible words than beams): nothing to compute
                token = tf.constant([tokens[beam]], dtype=tf.int32)
                probs, stepped[beam] = self.model.step(token, memory, states[beam], self.copy_bias)
                row = np.asarray(probs, dtype=np.float32)[0]
                ending[beam] = _log_probabilities(row[end_id : end_id + 1]).numpy()[0]
                row = np.where(self._banned_alive, ruled_out, row)
                row[sequences[beam, :step]] = ruled_out  # no id twice within a hypothesis
                proposed[beam] = np.argsort(-row, kind="stable")[:width]  # its likeliest ids, lower id first on ties
                proposals[beam] = _log_probabilities(row[proposed[beam]]).numpy()
            if step >= self._first_end_step:
                ended = (scores + ending) / self._penalty[step + 1]
                beam = int(np.argmax(ended))
                if ended[beam] > best:
                    best, best_sequence = ended[beam], sequences[beam].copy()
                    best_sequence[step] = end_id
            candidates = (scores[:, None] + proposals).reshape(-1)
            chosen = np.argsort(-candidates, kind="stable")[:width]
            parents, words = chosen // width, proposed.reshape(-1)[chosen]
            scores = candidates[chosen]
            sequences = sequences[parents]
            sequences[:, step] = words
            states = [stepped[parent] for parent in parents]
            tokens = [UNK_ID if word >= vocab_size else int(word) for word in words]
            length = step + 1
            if best >= scores.max() / self._penalty[steps]:
                break  # no unfinished hypothesis can overtake the best finished one
        finals = np.concatenate([[best], scores / self._penalty[length]]).astype(np.float32)
        pick = int(np.argmax(finals))
        return (best_sequence if pick == 0 else sequences[pick - 1]).tolist()

    def _greedy_ids(self, body, body_copy, body_grams):
        """Compiled: encode once, then argmax-decode every body in lock-step until all have ended."""
        import tensorflow as tf

        memory, state = self.model.encode(body, body_copy, body_grams, training=False)
        batch = tf.shape(body)[0]
        token = tf.fill([batch], tf.constant(self.encoder.start_id, tf.int32))
        finished = tf.zeros([batch], tf.bool)
        # A fixed-size tensor, not a growing TensorArray: XLA needs static sizes (it silently drops the writes of a
        # dynamic one). Positions after an early stop keep the end marker.
        end_id = tf.constant(self.encoder.end_id, tf.int32)
        output = tf.fill([batch, self.max_steps], end_id)
        positions = tf.range(self.max_steps)[None, :]
        banned, banned_first = tf.constant(self._banned), tf.constant(self._banned_first)
        vocab_size = tf.constant(self.config.title_vocab_size, tf.int32)
        used = tf.zeros([batch, self.config.output_size], tf.bool)
        for step in tf.range(self.max_steps):
            scores, state = self.model.step(token, memory, state, self.copy_bias)
            rules = tf.cond(step < self._first_end_step, lambda: banned_first, lambda: banned)
            mask = tf.logical_or(rules[None, :], used)
            scores = tf.where(mask, tf.constant(-1.0, scores.dtype), scores)
            chosen = tf.argmax(scores, axis=-1, output_type=tf.int32)
            chosen = tf.where(finished, end_id, chosen)
            output = tf.where(positions == step, chosen[:, None], output)
            used = tf.logical_or(used, tf.one_hot(chosen, self.config.output_size, on_value=True, off_value=False))
            finished = tf.logical_or(finished, tf.equal(chosen, end_id))
            token = tf.where(chosen >= vocab_size, tf.constant(UNK_ID, tf.int32), chosen)
            if tf.reduce_all(finished):
                break
        return output

    def _beam_ids(self, body, body_copy, body_grams):
        """Compiled beam search: encode once, tile beam-wise, then every body's hypotheses advance in lock-step.

        Rows are body-major (row = body * width + beam). Per step: one model call for all rows; the end marker's
        probability scores each hypothesis' finished title against its body's best; every hypothesis proposes its
        `width` likeliest allowed ids (a top-k per row, in probability order, so the log is taken of width values
        per row, not of the whole output); each body keeps the `width` best of its width * width proposals by
        summed log-probability, and the state follows its parent by a gather. The banned and no-repeat rules are
        applied to each row's `pool` likeliest ids, not to a rows x output_size mask: a row's `width` best allowed ids
        are always among its `width` + (banned ids) + (ids used so far) likeliest."""
        import tensorflow as tf

        width, steps = self.beam_width, self.max_steps
        memory, state = self.model.encode(body, body_copy, body_grams, training=False)
        batch = tf.shape(body)[0]
        rows = batch * width
        ruled_out = tf.constant(-1.0, tf.float32)
        banned_alive = tf.constant(self._banned_alive)[None, :]
        vocab_size = tf.constant(self.config.title_vocab_size, tf.int32)
        # Step 0 once per body, before tiling: the beams would all be copies of the start, so the first hypothesis'
        # `width` best first words are the beams (what the loop below would select, at a width-th of the cost).
        start = tf.fill([batch], tf.constant(self.encoder.start_id, tf.int32))
        probs, state = self.model.step(start, memory, state, self.copy_bias)
        values, words = tf.math.top_k(tf.where(banned_alive, ruled_out, tf.cast(probs, tf.float32)), k=width)
        scores = _log_probabilities(values)  # (B, W); the reference adds these to a score of 0.0, which is exact
        words = tf.reshape(words, [-1])
        memory = tf.nest.map_structure(lambda tensor: tf.repeat(tensor, width, axis=0), memory)  # a row per beam
        state = tf.nest.map_structure(lambda tensor: tf.repeat(tensor, width, axis=0), state)
        sequences = tf.pad(words[:, None], [[0, 0], [0, steps - 1]])
        token = tf.where(words >= vocab_size, tf.constant(UNK_ID, tf.int32), words)
        best = tf.fill([batch], tf.constant(-np.inf, tf.float32))
        best_sequence = tf.zeros([batch, steps], tf.int32)
        penalty = tf.constant(self._penalty)
        end_id = tf.constant(self.encoder.end_id, tf.int32)
        banned_ids = tf.constant(self._banned_alive)
        # Enough of a row's likeliest ids that `width` remain once its banned and already used ids are taken out: a
        # top-k of `pool` and a small filter instead of masking the whole rows x output_size tensor every step.
        pool = min(self.config.output_size, width + int(self._banned_alive.sum()) + steps - 1)
        body_base = tf.range(batch)[:, None] * width
        positions = tf.range(steps)[None, :]
        length = tf.constant(1)
        for step in tf.range(1, steps):
            probs, stepped = self.model.step(token, memory, state, self.copy_bias)
            probs = tf.cast(probs, tf.float32)
            if step >= self._first_end_step:
                ending = tf.reshape(_log_probabilities(probs[:, self.encoder.end_id]), [batch, width])
                top, beam = tf.math.top_k((scores + ending) / penalty[step + 1], k=1)  # ties: the lower beam
                top, beam = top[:, 0], beam[:, 0]
                improved = top > best
                finished = tf.gather(tf.reshape(sequences, [batch, width, steps]), beam, batch_dims=1)
                best = tf.where(improved, top, best)
                finished = tf.where(positions == step, end_id, finished)
                best_sequence = tf.where(improved[:, None], finished, best_sequence)
            likeliest, ids = tf.math.top_k(probs, k=pool)  # (rows, pool), lower id first on ties
            excluded = tf.logical_or(
                tf.gather(banned_ids, ids),
                tf.reduce_any(tf.equal(ids[:, :, None], sequences[:, None, :]), axis=2),  # unfilled: 0, banned anyway
            )
            likeliest, rank = tf.math.top_k(tf.where(excluded, ruled_out, likeliest), k=width)  # lower rank: lower id
            proposed = tf.gather(ids, rank, batch_dims=1)  # (rows, W)
            candidates = tf.reshape(scores, [rows, 1]) + _log_probabilities(likeliest)
            candidates = tf.reshape(candidates, [batch, width * width])
            scores, chosen = tf.math.top_k(candidates, k=width)  # lower (beam, rank) first on ties
            parents = tf.reshape(body_base + chosen // width, [-1])
            words = tf.reshape(tf.gather(tf.reshape(proposed, [batch, width * width]), chosen, batch_dims=1), [-1])
            sequences = tf.where(positions == step, words[:, None], tf.gather(sequences, parents))
            state = tf.nest.map_structure(lambda tensor: tf.gather(tensor, parents), stepped)
            token = tf.where(words >= vocab_size, tf.constant(UNK_ID, tf.int32), words)
            length = step + 1
            if tf.reduce_all(best >= tf.reduce_max(scores, axis=1) / penalty[steps]):
                break  # no unfinished hypothesis of any body can overtake its best finished one
        finals = tf.concat([best[:, None], scores / penalty[length]], axis=1)  # (B, 1 + W): finished first on ties
        _, pick = tf.math.top_k(finals, k=1)
        options = tf.concat([best_sequence[:, None, :], tf.reshape(sequences, [batch, width, steps])], axis=1)
        return tf.gather(options, pick[:, 0], batch_dims=1)

    def describe(self) -> dict:
        """Short facts for logs and serving metadata."""
        return {
            "architecture": self.architecture,
            "title_vocab_size": self.config.title_vocab_size,
            "body_vocab_size": self.config.body_vocab_size,
            "trigrams_per_token": self.config.trigrams_per_token,
            "max_title_tokens": self.max_steps - 1,
            "start_token": START,
            "copies_from_body": self.architecture == POINTER_GENERATOR,
            "decoding": self.decoding,
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


def _log_probabilities(probs):
    """float32 log-probabilities for beam search; both decoders call this one function, so their sums agree.

    A probability of 0 or less is -inf: an impossible id, never a candidate. That covers the ids ruled out (set to
    -1 before the top-k) and the copy slots of padding and of a word's second occurrence (a repeated body word is
    always copied from its first position), which a beam wider than the plausible words would otherwise fill up
    with. Tiny probabilities are floored at PROBABILITY_FLOOR so they stay finite. The log runs in float64: the
    vectorised and the scalar float32 log may differ in the last bit, and which elements take which path depends
    on the tensor's size (a batch of hypotheses or one); rounded from float64 the two agree."""
    import tensorflow as tf

    probs = tf.cast(probs, tf.float32)
    logs = tf.cast(tf.math.log(tf.cast(tf.maximum(probs, PROBABILITY_FLOOR), tf.float64)), tf.float32)
    return tf.where(probs > 0.0, logs, tf.constant(-np.inf, tf.float32))


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
        _check_decoding(**_with_defaults(recorded), max_steps=None)
    except ValueError as error:
        raise StageError(f"recorded decoding: {error}", path=path) from None
    return recorded


def _with_defaults(given: dict, fallback: dict | None = None) -> dict:
    """Each decoding option: the given value, else the fallback's (a bundle's record), else the module default."""
    fallback = fallback or {}
    return {
        key: given.get(key) if given.get(key) is not None else fallback.get(key, default)
        for key, default in DECODING_DEFAULTS.items()
    }


def _check_decoding(
    beam_width: int, length_penalty: float, min_length: int, max_steps: int | None, copy_bias: float | None = None
) -> tuple[int, float, int, float | None]:
    """Refuse decoding options that would fail deep inside TensorFlow or silently mean something else."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, int | np.integer) or beam_width < 1:
        raise ValueError(f"beam_width must be a whole number of at least 1 (1 is greedy decoding), got {beam_width!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, int | float | np.floating):
        raise ValueError(f"length_penalty must be a number, got {length_penalty!r}")
    if not 0.0 <= float(length_penalty) < float("inf"):
        raise ValueError(
            f"length_penalty must be 0 or more (0: no length normalisation; 1: GNMT's default), got {length_penalty!r}"
        )
    if isinstance(min_length, bool) or not isinstance(min_length, int | np.integer) or min_length < 0:
        raise ValueError(f"min_length must be a whole number of at least 0, got {min_length!r}")
    if max_steps is not None and min_length > max_steps - 1:
        raise ValueError(f"min_length {min_length} leaves no room for the end marker: this model's titles have at most "
                         f"{max_steps - 1} words")  # fmt: skip
    if copy_bias is not None:
        if isinstance(copy_bias, bool) or not isinstance(copy_bias, int | float | np.floating):
            raise ValueError(f"copy_bias must be a number, got {copy_bias!r}")
        if not 0.0 < float(copy_bias) < float("inf"):
            raise ValueError(f"copy_bias must be more than 0 (1: the copy switch as trained; above 1 copies more), "
                             f"got {copy_bias!r}")  # fmt: skip
        copy_bias = float(copy_bias)
    return int(beam_width), float(length_penalty), int(min_length), copy_bias


def _check_batch_limit(compiled_batch_limit: int) -> int:
    if compiled_batch_limit < 0:
        raise ValueError(f"compiled_batch_limit must be >= 0, got {compiled_batch_limit}")
    return compiled_batch_limit


def _check_bodies(bodies: Sequence[str]) -> list[str]:
    if isinstance(bodies, str | bytes):
        raise TypeError("bodies must be a list of strings, not a single string")
    bodies = list(bodies)
    for index, body in enumerate(bodies):
        if not isinstance(body, str):
            raise TypeError(f"bodies[{index}] must be a string, got {type(body).__name__}")
    return bodies
