"""Small batches (a server's one-body requests) decode through XLA: the same titles as the plain graph and the
reference loop, for any batch size up to the limit (padded to a power of two), greedy and beam, both architectures."""

import pytest

from issue_titles.predictor import SERVING_COMPILED_BATCH_LIMIT, TitlePredictor
from tests.stages.graph_reference import reference_titles
from tests.tiny_model import tiny_issues

BODIES = [issue.body for issue in tiny_issues(6, seed=21)] + ["", "the helm chart fails to render", "Ünïcödé 😀"]


@pytest.fixture(scope="module")
def plain(tiny) -> TitlePredictor:
    """The tiny model without XLA, loaded once for the module (decoding options change with `with_decoding`)."""
    return TitlePredictor.load(tiny)


@pytest.fixture(scope="module")
def compiled(tiny) -> dict[int, TitlePredictor]:
    """beam width -> the tiny model with XLA for batches up to 4, one per width for the module: each XLA size
    compiles once, not once per test."""
    loaded = TitlePredictor.load(tiny, compiled_batch_limit=4)
    return {width: loaded.with_decoding(beam_width=width) for width in (1, 2)}


@pytest.mark.parametrize("beam_width", [1, 2])
def test_compiled_small_batches_give_the_plain_graph_titles(plain, compiled, beam_width):
    plain = plain.with_decoding(beam_width=beam_width)
    compiled = compiled[beam_width]
    assert compiled.compiled_batch_limit == 4 and compiled.beam_width == beam_width
    # chunks of 3 (padded to 4) and the last chunk of 1 go through XLA
    assert compiled.predict(BODIES, chunk_size=3) == plain.predict(BODIES)
    assert compiled.predict(BODIES[:1]) == plain.predict(BODIES[:1]) == reference_titles(plain, BODIES[:1])


def test_compiled_greedy_titles_are_not_empty(compiled):
    """XLA silently dropped the writes of the greedy loop's growing TensorArray: every title came back empty.
    (A batch of 4, the XLA size the module's greedy predictor already compiled; the bug did not depend on size.)"""
    greedy = compiled[1]
    assert greedy.beam_width == 1 and greedy.compiled_batch_limit == 4
    titles = greedy.predict(BODIES[:4])
    assert all(title.strip() for title in titles)


def test_compiled_small_batches_work_for_the_tutorial_architecture(tutorial_model):
    plain = TitlePredictor.load(tutorial_model)
    compiled = TitlePredictor.load(tutorial_model, compiled_batch_limit=2)
    assert compiled.predict(BODIES[:2]) == plain.predict(BODIES[:2])


def record_compiled_sizes(predictor: TitlePredictor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the XLA beam decoder so the test sees the batch sizes it is called with (XLA compiles one per size);
    the wrapper goes when the test ends (the module's predictors are shared)."""
    sizes: list[int] = []
    compiled = predictor._beam_xla

    def recording(body, body_copy, body_grams):
        sizes.append(len(body))
        return compiled(body, body_copy, body_grams)

    monkeypatch.setattr(predictor, "_beam_xla", recording)
    return sizes


def test_batches_above_the_limit_use_the_plain_graph(compiled, monkeypatch):
    predictor = compiled[2]  # the module's width-2 predictor: XLA up to 4 bodies
    assert predictor.compiled_batch_limit == 4
    sizes = record_compiled_sizes(predictor, monkeypatch)
    predictor.predict(BODIES[:5])
    assert sizes == []
    predictor.predict(BODIES[:4])
    assert sizes == [4]


def test_a_served_bundle_compiles_small_batches_and_warm_up_meets_every_size_first(tiny, monkeypatch):
    predictor = TitlePredictor.load_bundle(tiny)  # what the serving runtime loads
    assert predictor.compiled_batch_limit == SERVING_COMPILED_BATCH_LIMIT
    sizes = record_compiled_sizes(predictor, monkeypatch)
    predictor.warm_up()
    warmed = set(sizes)
    sizes.clear()
    for size in range(1, SERVING_COMPILED_BATCH_LIMIT + 1):
        predictor.predict(BODIES[:1] * size)
    assert set(sizes) <= warmed == {1, 2, 4, 8, 16}


def test_a_negative_limit_is_refused(tiny):
    with pytest.raises(ValueError, match="compiled_batch_limit"):
        TitlePredictor.load(tiny, compiled_batch_limit=-1)
