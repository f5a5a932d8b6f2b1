"""Small batches (a server's one-body requests) decode through XLA: the same titles as the plain graph and the
reference loop, for any batch size up to the limit (padded to a power of two), greedy and beam, both architectures."""

import pytest

from issue_titles.predictor import DECODING_DEFAULTS, SERVING_COMPILED_BATCH_LIMIT, TitlePredictor
from tests.stages.graph_reference import reference_titles
from tests.tiny_model import tiny_issues

BODIES = [issue.body for issue in tiny_issues(6, seed=21)] + ["", "the helm chart fails to render", "Ünïcödé 😀"]


def with_batch_limit(predictor: TitlePredictor, compiled_batch_limit: int, **options) -> TitlePredictor:
    """`predictor`'s model and text encoding (no second load of the weights) with XLA for batches up to
    `compiled_batch_limit`, decoding with its options and `options` changed: what `TitlePredictor.load(...,
    compiled_batch_limit=...)` builds (test_a_served_bundle_... below loads one that way). It shares `predictor`'s
    compiled decoders as `with_decoding` does: its batches above the limit run the plain graph that `predictor`'s
    copies of its width trace once (the XLA functions are kept there too, but only it calls them)."""
    current = {key: getattr(predictor, key) for key in DECODING_DEFAULTS}
    return TitlePredictor(predictor.model, predictor.encoder, predictor.info, predictor.source,
                          compiled_batch_limit=compiled_batch_limit, decoders=predictor.decoders,
                          **(current | options))  # fmt: skip


@pytest.fixture(scope="module")
def plain(tiny_predictor) -> dict[int, TitlePredictor]:
    """beam width -> the tiny model without XLA (the session's load, tests/stages/conftest.py), one per width for
    the module: each plain graph is traced once, not once per test."""
    assert tiny_predictor.compiled_batch_limit == 0
    return {width: tiny_predictor.with_decoding(beam_width=width) for width in (1, 2)}


@pytest.fixture(scope="module")
def compiled(tiny_predictor) -> dict[int, TitlePredictor]:
    """beam width -> the tiny model with XLA for batches up to 4, one per width for the module: each XLA size
    compiles once, not once per test."""
    return {width: with_batch_limit(tiny_predictor, 4, beam_width=width) for width in (1, 2)}


@pytest.mark.parametrize("beam_width", [1, 2])
def test_compiled_small_batches_give_the_plain_graph_titles(plain, compiled, beam_width):
    plain = plain[beam_width]
    compiled = compiled[beam_width]
    assert compiled.compiled_batch_limit == 4 and compiled.beam_width == beam_width
    # chunks of 3 (padded to 4) and the last chunk of 1 go through XLA
    assert compiled.predict(BODIES, chunk_size=3) == plain.predict(BODIES)
    assert compiled.predict(BODIES[:1]) == plain.predict(BODIES[:1]) == reference_titles(plain, BODIES[:1])


def test_the_xla_decoder_compiles_the_plain_decoders_trace(compiled):
    """Tracing the decoder is seconds of Python: XLA compiles the plain graph's trace instead of tracing again."""
    predictor = compiled[2]
    assert predictor.predict(BODIES[:2]) == predictor.predict(BODIES)[:2]  # XLA, then the plain graph (over 4)
    plain, xla = (predictor.decoders(predictor.rules, jit_compile=jit) for jit in (False, True))
    assert plain.experimental_get_tracing_count() == 1
    assert xla.experimental_get_tracing_count() == 1
    assert [op.type for op in xla.get_concrete_function().graph.get_operations()
            if op.type.endswith("PartitionedCall")] == ["StatefulPartitionedCall"]  # fmt: skip


def test_compiled_greedy_titles_are_not_empty(compiled):
    """XLA silently dropped the writes of the greedy loop's growing TensorArray: every title came back empty.
    (A batch of 4, the XLA size the module's greedy predictor already compiled; the bug did not depend on size.)"""
    greedy = compiled[1]
    assert greedy.beam_width == 1 and greedy.compiled_batch_limit == 4
    titles = greedy.predict(BODIES[:4])
    assert all(title.strip() for title in titles)


def test_compiled_small_batches_work_for_the_tutorial_architecture(tutorial_predictor):
    plain = tutorial_predictor  # the session's TitlePredictor.load(tutorial_model): no XLA
    compiled = with_batch_limit(plain, 2)
    assert plain.compiled_batch_limit == 0 and compiled.compiled_batch_limit == 2
    assert compiled.predict(BODIES[:2]) == plain.predict(BODIES[:2])


def record_compiled_sizes(
    predictor: TitlePredictor, monkeypatch: pytest.MonkeyPatch, plain_graph_of: TitlePredictor | None = None
) -> list[int]:
    """Wrap the XLA beam decoder so the test sees the batch sizes it is called with (XLA compiles one per size);
    the wrapper goes when the test ends (the module's predictors are shared). With `plain_graph_of` (a predictor of
    the same bundle and decoding) every batch, the recorded ones too, decodes with that predictor's plain graph
    instead of compiling: the sizes seen are the same."""
    sizes: list[int] = []
    if plain_graph_of is None:
        compiled, plain = predictor.decoder(xla=True), predictor.decoder(xla=False)
    else:
        compiled = plain = plain_graph_of.decoder(xla=False)

    def recording(body, body_copy, body_grams):
        sizes.append(len(body))
        return compiled(body, body_copy, body_grams)

    monkeypatch.setattr(predictor, "decoder", lambda xla: recording if xla else plain)
    return sizes


def test_batches_above_the_limit_use_the_plain_graph(compiled, monkeypatch):
    predictor = compiled[2]  # the module's width-2 predictor: XLA up to 4 bodies
    assert predictor.compiled_batch_limit == 4
    sizes = record_compiled_sizes(predictor, monkeypatch)
    predictor.predict(BODIES[:5])
    assert sizes == []
    predictor.predict(BODIES[:4])
    assert sizes == [4]


def test_a_served_bundle_compiles_small_batches_and_warm_up_meets_every_size_first(tiny, tiny_predictor, monkeypatch):
    predictor = TitlePredictor.load_bundle(tiny)  # what the serving runtime loads
    assert predictor.compiled_batch_limit == SERVING_COMPILED_BATCH_LIMIT
    # What this test guards is which batch sizes reach the XLA decoder, and that warm-up meets each first; the
    # recorder decodes them with a plain graph instead of five XLA compiles (~8 s of CPU): the one the session's
    # load of this same bundle (decoding as it does) traced for the module (`plain`), not a trace of this load's
    # own (~1.5 s), which warm-up's batch above the limit would make. XLA's titles at a padded and an exact size are
    # compared with the plain graph's above, and the serving tests' server (tests/conftest.py `server`) loads this
    # same bundle with load_bundle and warms every XLA size up for real before it answers.
    assert predictor.decoding == tiny_predictor.decoding
    sizes = record_compiled_sizes(predictor, monkeypatch, plain_graph_of=tiny_predictor)
    predictor.warm_up()
    warmed = set(sizes)
    sizes.clear()
    for size in range(1, SERVING_COMPILED_BATCH_LIMIT + 1):
        predictor.predict(BODIES[:1] * size)
    assert set(sizes) <= warmed == {1, 2, 4, 8, 16}


def test_a_negative_limit_is_refused(tiny):
    with pytest.raises(ValueError, match="compiled_batch_limit"):
        TitlePredictor.load(tiny, compiled_batch_limit=-1)
