"""The tutorial's way of decoding, kept as the test oracle: a model call per token per body (per hypothesis, for
beam search), selection in numpy.

Tests and bench/decoding.py compare the compiled decoders' titles (`decoders`, what `TitlePredictor.predict` runs)
with these loops': both apply one `DecodingRules`, break ties the same way (the lower id within a hypothesis, then
the lower beam, as `tf.math.top_k` does), sum and divide in float32, and take their logs with one function
(`decoders.log_probabilities`). Nothing on the serving path imports this module.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from issue_titles.decoders import UNK_ID, DecodingRules, log_probabilities
from issue_titles.decoding_options import check_bodies

if TYPE_CHECKING:
    from issue_titles.predictor import TitlePredictor


def predict_reference(predictor: "TitlePredictor", bodies: Sequence[str]) -> list[str]:
    """The tutorial-style loop: encode one body, then one model call per generated token (and hypothesis)."""
    import tensorflow as tf

    bodies = check_bodies(bodies)
    decode = greedy_reference_ids if predictor.beam_width == 1 else beam_reference_ids
    titles = []
    for body in bodies:
        encoded = predictor.encoder.encode_bodies([body])
        memory, state = predictor.model.encode(
            tf.constant(encoded["body"]),
            tf.constant(encoded["body_copy"]),
            tf.constant(encoded["body_grams"]),
            training=False,
        )
        ids = decode(predictor.model, predictor.rules, memory, state)
        titles.extend(predictor.encoder.decode(np.array([ids]), encoded["body_tokens"]))
    return titles


def greedy_reference_ids(model, rules: DecodingRules, memory, state) -> list[int]:
    """One body's greedy decoding, step by step: a model call per token, the argmax in numpy."""
    import tensorflow as tf

    token = rules.start_id
    ids: list[int] = []
    for step in range(rules.max_steps):
        scores, state = model.step(tf.constant([token], dtype=tf.int32), memory, state, rules.copy_bias)
        banned = (rules.banned_first if step < rules.first_end_step else rules.banned).copy()
        banned[ids] = True  # a title does not repeat a word
        token = int(np.argmax(np.where(banned, -1.0, np.asarray(scores)[0])))
        ids.append(token)
        if token == rules.end_id:
            break
        if token >= rules.title_vocab_size:
            token = UNK_ID  # a copied body word enters the decoder as "unknown", as in training
    return ids


def beam_reference_ids(model, rules: DecodingRules, memory, state) -> list[int]:
    """One body's beam search, step by step: a model call per live hypothesis, selection in numpy.

    Mirrors `decoders.beam_ids` operation for operation (the same float32 sums and divisions, the same log function,
    the same tie order: lower id within a hypothesis, lower beam across them), so the titles are the same."""
    import tensorflow as tf

    width, steps = rules.beam_width, rules.max_steps
    end_id, vocab_size = rules.end_id, rules.title_vocab_size
    ruled_out = np.float32(-1.0)
    scores = np.full(width, -np.inf, np.float32)
    scores[0] = 0.0  # the beams start as copies of one hypothesis: only the first may expand
    sequences = np.zeros((width, steps), np.int32)
    tokens, states = [rules.start_id] * width, [state] * width
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
            probs, stepped[beam] = model.step(token, memory, states[beam], rules.copy_bias)
            row = np.asarray(probs, dtype=np.float32)[0]
            ending[beam] = log_probabilities(row[end_id : end_id + 1]).numpy()[0]
            row = np.where(rules.banned_alive, ruled_out, row)
            row[sequences[beam, :step]] = ruled_out  # no id twice within a hypothesis
            proposed[beam] = np.argsort(-row, kind="stable")[:width]  # its likeliest ids, lower id first on ties
            proposals[beam] = log_probabilities(row[proposed[beam]]).numpy()
        if step >= rules.first_end_step:
            ended = (scores + ending) / rules.penalty[step + 1]
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
        if best >= scores.max() / rules.penalty[steps]:
            break  # no unfinished hypothesis can overtake the best finished one
    finals = np.concatenate([[best], scores / rules.penalty[length]]).astype(np.float32)
    pick = int(np.argmax(finals))
    return (best_sequence if pick == 0 else sequences[pick - 1]).tolist()
