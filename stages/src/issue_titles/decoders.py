"""The compiled decoders: every body of a batch decoded together by one TensorFlow function.

Text is encoded for the whole chunk at once, then one compiled function runs the encoder once and the decoder loop
for every body together. Decoding never emits padding, the unknown-word token or the start marker, never ends
before the first word (or before `min_length` words), and never repeats a word within a title (an untrained or
overfit decoder otherwise loops on its likeliest word: "rule rule rule"). `DecodingRules` holds those rules, worked
out once per predictor; `reference_decoding` applies the same rules one token at a time, as the test oracle.

`beam_width` 1 is greedy decoding (the argmax at every step). Wider, it is beam search with the GNMT length penalty
(Wu et al., 2016): a title's score is its summed log-probability divided by ((5 + length) / 6) ** length_penalty,
where length counts the ids emitted, the end marker included (it is a scored decision like any word). Greedy
titles are short (5.4 words against 6.9 for real ones) because every extra word costs probability; the penalty
divides that cost back out. Each step keeps the `beam_width` best unfinished hypotheses per body; a hypothesis that
takes the end marker leaves the beam, and only the best finished one per body (by normalised score) is kept. At the
end the best of that and the unfinished ones (normalised at their length) is the title. A chunk stops early once
no unfinished hypothesis of any body can still beat its body's best finished one (log-probabilities only fall and,
with a non-negative penalty, the divisor only grows).

`compile_decoder` turns `greedy_ids` or `beam_ids` into a TensorFlow function, and `CompiledDecoders` has XLA compile
that function's trace for small batches (the predictor pads them to a power of two so each size compiles once). The
options a predictor may change without reloading (`with_decoding`: length penalty, min length, copy bias) are inputs
of that function, not constants in it: `CompiledDecoders` keeps one function per beam width and kind for a model, and
every predictor of the model shares them, so `stages build` tunes its eight length penalty and copy bias pairs with
one trace, not nine.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from issue_titles.model_config import ModelConfig
from issue_titles.text import TextEncoder

UNK_ID = 1
PROBABILITY_FLOOR = 1e-9  # tiny probabilities are floored before the log (beam search); exact zeros are impossible ids


@dataclass(frozen=True, eq=False)
class DecodingRules:
    """What every decoder (compiled or reference) obeys for one model and one set of options, worked out once."""

    beam_width: int
    copy_bias: float
    max_steps: int  # ids a title may have, the end marker included
    start_id: int
    end_id: int
    title_vocab_size: int  # ids at or above this are copied body words: they enter the decoder as UNK_ID
    output_size: int
    first_end_step: int  # the first step at which the end marker may be chosen
    banned: np.ndarray  # never output: padding, unknown word and start marker
    banned_first: np.ndarray  # before `first_end_step`, and for an unfinished hypothesis: the end marker too
    penalty: np.ndarray  # the length penalty of a title of n ids (index n), float32 as every decoder divides by it

    @property
    def banned_alive(self) -> np.ndarray:
        """An unfinished hypothesis continues with a word, never the end."""
        return self.banned_first

    @classmethod
    def build(
        cls,
        config: ModelConfig,
        encoder: TextEncoder,
        beam_width: int,
        length_penalty: float,
        min_length: int,
        copy_bias: float,
    ) -> "DecodingRules":
        max_steps = config.title_length - 1
        banned = np.zeros(config.output_size, dtype=bool)
        banned[[0, UNK_ID, encoder.start_id]] = True  # padding, unknown word and start marker are never output
        banned_first = banned.copy()
        banned_first[encoder.end_id] = True  # no empty titles (nor, with min_length, short ones)
        lengths = np.arange(max_steps + 1, dtype=np.float64)
        return cls(
            beam_width=beam_width,
            copy_bias=copy_bias,
            max_steps=max_steps,
            start_id=encoder.start_id,
            end_id=encoder.end_id,
            title_vocab_size=config.title_vocab_size,
            output_size=config.output_size,
            first_end_step=max(1, min_length),
            banned=banned,
            banned_first=banned_first,
            penalty=(((5.0 + lengths) / 6.0) ** length_penalty).astype(np.float32),
        )


class DecodingInputs(NamedTuple):
    """The options of `DecodingRules` that a compiled decoder takes as inputs at every call, so that changing them
    needs no new trace: the length penalty table, the copy bias and the first step that may end a title."""

    penalty: Any  # (max_steps + 1,) float32
    copy_bias: Any  # float32 scalar
    first_end_step: Any  # int32 scalar

    @classmethod
    def of(cls, rules: DecodingRules) -> "DecodingInputs":
        return cls(rules.penalty, np.float32(rules.copy_bias), np.int32(rules.first_end_step))


def compile_decoder(decode: Callable, model: Any, rules: DecodingRules) -> Callable:
    """`decode` (greedy_ids or beam_ids) for this model at this beam width, as a TensorFlow function of the encoded
    batch (body, body_copy, body_grams) and the `DecodingInputs`. Only the parts of `rules` that depend on the model
    and the beam width are compiled in."""
    import tensorflow as tf

    config = model.config
    length = config.body_length
    signature = [tf.TensorSpec([None, length], tf.int32), tf.TensorSpec([None, length], tf.int32),
                 tf.TensorSpec([None, length, config.trigrams_per_token], tf.int32),
                 tf.TensorSpec([rules.max_steps + 1], tf.float32), tf.TensorSpec([], tf.float32),
                 tf.TensorSpec([], tf.int32)]  # fmt: skip

    def decode_batch(body, body_copy, body_grams, penalty, copy_bias, first_end_step):
        return decode(model, rules, DecodingInputs(penalty, copy_bias, first_end_step), body, body_copy, body_grams)

    return tf.function(decode_batch, input_signature=signature)


class CompiledDecoders:
    """The compiled decoding functions of one model, made when first needed: greedy or beam (per beam width), plain
    graph or XLA. A predictor and every `with_decoding` copy of it share one, so a new length penalty, min length or
    copy bias reuses the traced functions (and XLA's compiled batch sizes); a new beam width traces its own."""

    def __init__(self, model: Any, encoder: TextEncoder) -> None:
        self.model = model
        self.encoder = encoder
        self._functions: dict[tuple[int, bool], Any] = {}  # tf.function objects

    def __call__(self, rules: DecodingRules, jit_compile: bool) -> Any:
        """The function for `rules.beam_width`, called as f(body, body_copy, body_grams, *DecodingInputs.of(rules)).

        The XLA one calls the plain one's traced graph, which XLA compiles once per batch size it meets: tracing the
        decoder costs seconds (a few thousand TensorFlow ops built in Python), and XLA compiles the same graph either
        way."""
        key = (rules.beam_width, jit_compile)
        if key not in self._functions:
            if jit_compile:
                import tensorflow as tf

                traced = self(rules, jit_compile=False).get_concrete_function()
                self._functions[key] = tf.function(lambda *inputs: traced(*inputs),
                                                   input_signature=traced.structured_input_signature[0],
                                                   jit_compile=True)  # fmt: skip
            else:
                decode = greedy_ids if rules.beam_width == 1 else beam_ids
                self._functions[key] = compile_decoder(decode, self.model, rules)
        return self._functions[key]


def log_probabilities(probs):
    """float32 log-probabilities for beam search; every decoder calls this one function, so their sums agree.

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


def greedy_ids(model, rules: DecodingRules, options: DecodingInputs, body, body_copy, body_grams):
    """Compiled: encode once, then argmax-decode every body in lock-step until all have ended. The length penalty,
    min length and copy bias come from `options`, never from `rules` (see `compile_decoder`)."""
    import tensorflow as tf

    memory, state = model.encode(body, body_copy, body_grams, training=False)
    batch = tf.shape(body)[0]
    token = tf.fill([batch], tf.constant(rules.start_id, tf.int32))
    finished = tf.zeros([batch], tf.bool)
    # A fixed-size tensor, not a growing TensorArray: XLA needs static sizes (it silently drops the writes of a
    # dynamic one). Positions after an early stop keep the end marker.
    end_id = tf.constant(rules.end_id, tf.int32)
    output = tf.fill([batch, rules.max_steps], end_id)
    positions = tf.range(rules.max_steps)[None, :]
    banned, banned_first = tf.constant(rules.banned), tf.constant(rules.banned_first)
    vocab_size = tf.constant(rules.title_vocab_size, tf.int32)
    used = tf.zeros([batch, rules.output_size], tf.bool)
    for step in tf.range(rules.max_steps):
        scores, state = model.step(token, memory, state, options.copy_bias)
        barred = tf.cond(step < options.first_end_step, lambda: banned_first, lambda: banned)
        mask = tf.logical_or(barred[None, :], used)
        scores = tf.where(mask, tf.constant(-1.0, scores.dtype), scores)
        chosen = tf.argmax(scores, axis=-1, output_type=tf.int32)
        chosen = tf.where(finished, end_id, chosen)
        output = tf.where(positions == step, chosen[:, None], output)
        used = tf.logical_or(used, tf.one_hot(chosen, rules.output_size, on_value=True, off_value=False))
        finished = tf.logical_or(finished, tf.equal(chosen, end_id))
        token = tf.where(chosen >= vocab_size, tf.constant(UNK_ID, tf.int32), chosen)
        if tf.reduce_all(finished):
            break
    return output


def beam_ids(model, rules: DecodingRules, options: DecodingInputs, body, body_copy, body_grams):
    """Compiled beam search: encode once, tile beam-wise, then every body's hypotheses advance in lock-step.

    Rows are body-major (row = body * width + beam). Per step: one model call for all rows; the end marker's
    probability scores each hypothesis' finished title against its body's best; every hypothesis proposes its
    `width` likeliest allowed ids (a top-k per row, in probability order, so the log is taken of width values
    per row, not of the whole output); each body keeps the `width` best of its width * width proposals by
    summed log-probability, and the state follows its parent by a gather. The banned and no-repeat rules are
    applied to each row's `pool` likeliest ids, not to a rows x output_size mask: a row's `width` best allowed ids
    are always among its `width` + (banned ids) + (ids used so far) likeliest."""
    import tensorflow as tf

    width, steps = rules.beam_width, rules.max_steps
    memory, state = model.encode(body, body_copy, body_grams, training=False)
    batch = tf.shape(body)[0]
    rows = batch * width
    ruled_out = tf.constant(-1.0, tf.float32)
    banned_alive = tf.constant(rules.banned_alive)[None, :]
    vocab_size = tf.constant(rules.title_vocab_size, tf.int32)
    # Step 0 once per body, before tiling: the beams would all be copies of the start, so the first hypothesis'
    # `width` best first words are the beams (what the loop below would select, at a width-th of the cost).
    start = tf.fill([batch], tf.constant(rules.start_id, tf.int32))
    probs, state = model.step(start, memory, state, options.copy_bias)
    values, words = tf.math.top_k(tf.where(banned_alive, ruled_out, tf.cast(probs, tf.float32)), k=width)
    scores = log_probabilities(values)  # (B, W); the reference adds these to a score of 0.0, which is exact
    words = tf.reshape(words, [-1])
    memory = tf.nest.map_structure(lambda tensor: tf.repeat(tensor, width, axis=0), memory)  # a row per beam
    state = tf.nest.map_structure(lambda tensor: tf.repeat(tensor, width, axis=0), state)
    sequences = tf.pad(words[:, None], [[0, 0], [0, steps - 1]])
    token = tf.where(words >= vocab_size, tf.constant(UNK_ID, tf.int32), words)
    best = tf.fill([batch], tf.constant(-np.inf, tf.float32))
    best_sequence = tf.zeros([batch, steps], tf.int32)
    penalty = tf.convert_to_tensor(options.penalty, tf.float32)
    end_id = tf.constant(rules.end_id, tf.int32)
    banned_ids = tf.constant(rules.banned_alive)
    # Enough of a row's likeliest ids that `width` remain once its banned and already used ids are taken out: a
    # top-k of `pool` and a small filter instead of masking the whole rows x output_size tensor every step.
    pool = min(rules.output_size, width + int(rules.banned_alive.sum()) + steps - 1)
    body_base = tf.range(batch)[:, None] * width
    positions = tf.range(steps)[None, :]
    length = tf.constant(1)
    for step in tf.range(1, steps):
        probs, stepped = model.step(token, memory, state, options.copy_bias)
        probs = tf.cast(probs, tf.float32)
        if step >= options.first_end_step:
            ending = tf.reshape(log_probabilities(probs[:, rules.end_id]), [batch, width])
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
        candidates = tf.reshape(scores, [rows, 1]) + log_probabilities(likeliest)
        candidates = tf.reshape(candidates, [batch, width * width])
        scores, chosen = tf.math.top_k(candidates, k=width)  # lower (beam, rank) first on ties
        parents = tf.reshape(body_base + chosen // width, [-1])
        words = tf.reshape(tf.gather(tf.reshape(proposed, [batch, width * width]), chosen, batch_dims=1), [-1])
        sequences = tf.where(positions == step, words[:, None], tf.gather(sequences, parents))
        state = tf.nest.map_structure(lambda tensor: tf.gather(tensor, parents), stepped)  # noqa: B023 (called here)
        token = tf.where(words >= vocab_size, tf.constant(UNK_ID, tf.int32), words)
        length = step + 1
        if tf.reduce_all(best >= tf.reduce_max(scores, axis=1) / penalty[steps]):
            break  # no unfinished hypothesis of any body can overtake its best finished one
    finals = tf.concat([best[:, None], scores / penalty[length]], axis=1)  # (B, 1 + W): finished first on ties
    _, pick = tf.math.top_k(finals, k=1)
    options = tf.concat([best_sequence[:, None, :], tf.reshape(sequences, [batch, width, steps])], axis=1)
    return tf.gather(options, pick[:, 0], batch_dims=1)
