"""Turn issue bodies into titles with a trained model or a serving bundle: `TitlePredictor`.

The predictor ties the seams together: `model_loading` reads and checks the folder, `decoding_options` the options
(defaults, checks), `decoders` the compiled decoders it runs. `predict` is the fast path: text is encoded for the
whole chunk at once, then one compiled TensorFlow function runs the encoder once and the decoder loop for every
body together (greedy for `beam_width` 1, else beam search with the GNMT length penalty: see `decoders`). The
tutorial's per-token loop lives in `reference_decoding`, a test oracle the serving path never imports.

Small batches — one body per request is what a server mostly sees — are dominated not by arithmetic but by the
cost of running a few hundred small TensorFlow ops per decoding step. With `compiled_batch_limit` set (the serving
loader sets it), a batch of up to that many bodies runs the same decoding function compiled by XLA, padded to the
next power of two so each size compiles once: 2.4x faster for one body (21.5 -> 8.9 ms), the same ids. Larger
batches keep the plain graph, which XLA barely beats there and which needs no compile per batch size.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from issue_titles.contract import PROVENANCE
from issue_titles.decoders import PROBABILITY_FLOOR, UNK_ID, CompiledDecoders, DecodingInputs, DecodingRules
from issue_titles.decoding_options import (
    DECODING_DEFAULTS,
    DEFAULT_BEAM_WIDTH,
    DEFAULT_COPY_BIAS,
    DEFAULT_LENGTH_PENALTY,
    DEFAULT_MIN_LENGTH,
    SERVING_COMPILED_BATCH_LIMIT,
    check_batch_limit,
    check_bodies,
    check_decoding,
    with_defaults,
)
from issue_titles.errors import StageError
from issue_titles.model_config import POINTER_GENERATOR, ModelConfig
from issue_titles.model_loading import check_bundle, read_description, read_model, read_text_config, recorded_decoding
from issue_titles.provenance import verify_bundle
from issue_titles.text import START, TextEncoder

# Importers name these here, where they always were (the serving loader, build, evaluate, the tests and bench).
__all__ = [
    "DECODING_DEFAULTS",
    "DEFAULT_BEAM_WIDTH",
    "DEFAULT_COPY_BIAS",
    "DEFAULT_LENGTH_PENALTY",
    "DEFAULT_MIN_LENGTH",
    "PROBABILITY_FLOOR",
    "SERVING_COMPILED_BATCH_LIMIT",
    "UNK_ID",
    "TitlePredictor",
    "check_bundle",
    "read_description",
    "read_text_config",
    "recorded_decoding",
]


class TitlePredictor:
    """A trained title model plus the text encoding it was trained with, decoding with one set of options."""

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
        decoders: CompiledDecoders | None = None,
    ) -> None:
        """`decoders`: the compiled functions of another predictor of this same model and encoder to reuse
        (`with_decoding`); by default this predictor compiles its own when it first decodes."""
        self.model = model
        self.encoder = encoder
        self.info = info
        self.source = source
        self.config: ModelConfig = model.config
        self.max_steps = self.config.title_length - 1
        self.beam_width, self.length_penalty, self.min_length, self.copy_bias = self._checked_options(
            beam_width, length_penalty, min_length, copy_bias
        )
        self.rules = DecodingRules.build(
            self.config, encoder, self.beam_width, self.length_penalty, self.min_length, self.copy_bias
        )
        self.compiled_batch_limit = check_batch_limit(compiled_batch_limit)
        if decoders is not None and (decoders.model is not model or decoders.encoder is not encoder):
            raise ValueError("the compiled decoders given belong to another model or text encoding")
        self.decoders = decoders if decoders is not None else CompiledDecoders(model, encoder)
        self._inputs = DecodingInputs.of(self.rules)

    def _checked_options(
        self, beam_width: int, length_penalty: float, min_length: int, copy_bias: float | None
    ) -> tuple[int, float, int, float]:
        """The options checked against this model too: its title length, output size and architecture; a copy bias
        left as None becomes the architecture's default."""
        beam_width, length_penalty, min_length, copy_bias = check_decoding(
            beam_width, length_penalty, min_length, self.max_steps, copy_bias
        )
        copies = self.config.architecture == POINTER_GENERATOR
        if copy_bias is not None and copy_bias != 1.0 and not copies:
            raise ValueError(f"copy_bias {copy_bias} applies to the pointer_generator architecture only: the "
                             f"{self.config.architecture} model does not copy")  # fmt: skip
        if beam_width > self.config.output_size:
            raise ValueError(f"beam_width {beam_width} is wider than this model's {self.config.output_size} ids")
        copy_bias = copy_bias if copy_bias is not None else (DEFAULT_COPY_BIAS if copies else 1.0)
        return beam_width, length_penalty, min_length, copy_bias

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
        check_decoding(**with_defaults(given), max_steps=None)
        check_batch_limit(compiled_batch_limit)  # an API argument: a ValueError, before the StageError wrapping below
        folder = Path(folder)
        if not folder.is_dir():
            raise StageError("model folder does not exist", path=folder)
        if verify and (folder / PROVENANCE).is_file():
            verify_bundle(folder)
        decoding = with_defaults(given, recorded_decoding(folder))
        model, encoder, info = read_model(folder)
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
        return TitlePredictor(self.model, self.encoder, self.info, self.source, decoders=self.decoders,
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
        bodies = check_bodies(bodies)
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
            return self.decoder(xla=False)(body, body_copy, body_grams).numpy()
        # XLA compiles once per batch size it meets: hand it powers of two only.
        padded = 1 << (rows - 1).bit_length()
        if padded > rows:
            body, body_copy, body_grams = (np.concatenate([array, np.repeat(array[-1:], padded - rows, axis=0)])
                                           for array in (body, body_copy, body_grams))  # fmt: skip
        return self.decoder(xla=True)(body, body_copy, body_grams).numpy()[:rows]

    def decoder(self, xla: bool) -> Callable[[np.ndarray, np.ndarray, np.ndarray], Any]:
        """This predictor's compiled decoding, a function of the encoded batch (body, body_copy, body_grams) to ids:
        the plain graph, or XLA with `xla`. Its options go in as inputs, so predictors that differ only in them run
        the same traced function."""
        compiled, inputs = self.decoders(self.rules, jit_compile=xla), self._inputs
        return lambda body, body_copy, body_grams: compiled(body, body_copy, body_grams, *inputs)

    def warm_up(self, body: str = "warm up the decoder") -> None:
        """Compile every batch size a request can meet (the plain graph, and each XLA size up to the limit), so no
        request waits for a compile."""
        sizes = [1 << exponent for exponent in range(self.compiled_batch_limit.bit_length())]
        for size in [*sizes, self.compiled_batch_limit + 1]:
            self.predict([body] * size)

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
