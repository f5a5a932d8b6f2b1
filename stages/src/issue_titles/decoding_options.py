"""How titles are chosen: the decoding options, their defaults, and the checks every entry point runs on them.

TensorFlow-free, so options are refused with one line before a model is loaded (`TitlePredictor.load` checks given
ones before reading any file; a bundle's recorded ones are checked naming provenance.json).
"""

from collections.abc import Sequence

import numpy as np

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


def with_defaults(given: dict, fallback: dict | None = None) -> dict:
    """Each decoding option: the given value, else the fallback's (a bundle's record), else the module default."""
    fallback = fallback or {}
    return {
        key: given.get(key) if given.get(key) is not None else fallback.get(key, default)
        for key, default in DECODING_DEFAULTS.items()
    }


def check_decoding(
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


def check_batch_limit(compiled_batch_limit: int) -> int:
    if compiled_batch_limit < 0:
        raise ValueError(f"compiled_batch_limit must be >= 0, got {compiled_batch_limit}")
    return compiled_batch_limit


def check_bodies(bodies: Sequence[str]) -> list[str]:
    """The bodies as a list, each a string: a single string would otherwise be decoded letter by letter."""
    if isinstance(bodies, str | bytes):
        raise TypeError("bodies must be a list of strings, not a single string")
    bodies = list(bodies)
    for index, body in enumerate(bodies):
        if not isinstance(body, str):
            raise TypeError(f"bodies[{index}] must be a string, got {type(body).__name__}")
    return bodies
