"""Body tokens' character trigrams: hashed the same way everywhere, written by pre_process, read by the encoder (an
unknown word is told apart by its spelling), absent from older outputs; word dropout acts in training only."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from issue_titles.errors import StageError
from issue_titles.models import ModelConfig, build_model
from issue_titles.predictor import read_text_config
from issue_titles.text import STANDARDIZATION, token_trigrams
from issue_titles.train import TrainSettings
from tests.stages.conftest import run_stages
from tests.stages.graph_reference import reference_titles


def trigrams(*tokens: str, per_token: int = 10, buckets: int = 30_000) -> np.ndarray:
    return token_trigrams(tf.constant([list(tokens)]), per_token, buckets).numpy()[0]


def test_a_token_gets_the_trigrams_of_its_marked_spelling_and_padding_gets_none():
    ab, kvcache, padding, accented, one = trigrams("ab", "kvcache", "", "été", "a")
    assert (ab != 0).sum() == 2  # "<ab", "ab>"
    assert (kvcache != 0).sum() == 7  # "<kvcache>": 9 characters
    assert (accented != 0).sum() == 3  # characters, not bytes
    assert (one != 0).sum() == 1  # "<a>"
    assert not padding.any()
    assert (kvcache[kvcache != 0] < 30_000).all()


def test_long_tokens_keep_their_first_trigrams_only():
    (ids,) = trigrams("helm.v4.chart.values", per_token=4)
    assert ids.shape == (4,) and (ids != 0).all()
    np.testing.assert_array_equal(ids, trigrams("helm.v4", per_token=4)[0])  # "<he", "hel", "elm", "lm."


def test_similar_spellings_share_trigrams_and_the_same_token_always_gets_the_same_ids():
    kvcache, kv_cache, server, again = trigrams("kvcache", "kv_cache", "server", "kvcache")
    np.testing.assert_array_equal(kvcache, again)
    shared = set(kvcache[kvcache != 0]) & set(kv_cache[kv_cache != 0])
    assert len(shared) >= 4  # "<kv", "cac", "ach", "che", "he>"
    assert not set(kvcache[kvcache != 0]) & set(server[server != 0])


def test_the_hash_is_pinned_so_a_model_is_served_the_ids_it_was_trained_with():
    # TensorFlow's to_hash_bucket_fast is FarmHash64 and documented as stable; if an upgrade changed it, every
    # trained model would silently read other ids. These are the ids of "<ab" and "ab>" in 30,000 buckets.
    np.testing.assert_array_equal(trigrams("ab", per_token=3)[0], [9028, 28934, 0])


def test_no_trigrams_is_an_empty_last_axis():
    ids = token_trigrams(tf.constant([["a", "b", ""]]), 0, 0).numpy()
    assert ids.shape == (1, 3, 0)


def synthetic_split(root: Path) -> Path:
    """The tiny model's synthetic issues, split (a few dozen rows: the trainings below take seconds)."""
    from issue_titles.csvio import write_issues
    from issue_titles.split import SplitSettings, run_split
    from tests.tiny_model import tiny_issues

    (root / "raw").mkdir(parents=True)
    write_issues(root / "raw" / "issues.csv", tiny_issues())
    run_split(root / "raw", root / "split", SplitSettings(test_fraction=0.2, seed=1))
    return root / "split"


@pytest.fixture(scope="module")
def spelled(tmp_path_factory) -> dict[str, Path]:
    """pre_process with --trigrams-per-token 10 and train with --word-dropout 0.25, through the CLI, tiny."""
    root = tmp_path_factory.mktemp("spelled")
    out = {"pre_process": root / "pre_process", "train": root / "train"}
    assert run_stages("pre_process", "--input", str(synthetic_split(root)), "--output", str(out["pre_process"]),
                      "--body-length", "24", "--trigrams-per-token", "10") == 0  # fmt: skip
    assert run_stages("train", "--input", out["pre_process"], "--output", out["train"], "--epochs", "2",
                      "--batch-size", "16", "--embedding-dim", "16", "--hidden-dim", "16",
                      "--word-dropout", "0.25") == 0  # fmt: skip
    return out


def test_pre_process_writes_the_training_bodies_trigrams(spelled):
    summary = json.loads((spelled["pre_process"] / "preprocess.json").read_text())
    grams = np.load(spelled["pre_process"] / "train_body_grams.npy")
    body = np.load(spelled["pre_process"] / "train_body.npy")
    assert summary["trigrams_per_token"] == 10 and summary["trigram_buckets"] == 30_000
    assert grams.shape == (*body.shape, 10) and grams.dtype == np.int16
    assert ((grams != 0).any(axis=2) == (body != 0)).all()  # every real token has trigrams, padding none


def test_by_default_pre_process_writes_no_trigrams(chain):
    assert not (chain["pre_process"] / "train_body_grams.npy").exists()
    summary = json.loads((chain["pre_process"] / "preprocess.json").read_text())
    assert (summary["trigrams_per_token"], summary["trigram_buckets"]) == (0, 0)


def test_an_output_written_before_trigrams_existed_reads_as_none(tmp_path):
    old = {"body_vocab_size": 50, "body_length": 10, "title_vocab_size": 40, "title_length": 6,
           "standardization": STANDARDIZATION}  # fmt: skip
    (tmp_path / "preprocess.json").write_text(json.dumps(old))
    config = read_text_config(tmp_path)
    assert (config.trigrams_per_token, config.trigram_buckets) == (0, 0)


@pytest.mark.parametrize("fields", [{"trigrams_per_token": -1, "trigram_buckets": 100},
                                    {"trigrams_per_token": 10, "trigram_buckets": 1},
                                    {"trigrams_per_token": "10", "trigram_buckets": 100}])  # fmt: skip
def test_bad_trigram_settings_in_preprocess_json_are_refused_by_file(tmp_path, fields):
    text = {"body_vocab_size": 50, "body_length": 10, "title_vocab_size": 40, "title_length": 6,
            "standardization": STANDARDIZATION} | fields  # fmt: skip
    (tmp_path / "preprocess.json").write_text(json.dumps(text))
    with pytest.raises(StageError, match="trigrams_per_token") as error:
        read_text_config(tmp_path)
    assert "preprocess.json" in str(error.value)


def spelled_model(per_token: int, word_dropout: float = 0.0):
    keras.utils.set_random_seed(3)
    config = ModelConfig("pointer_generator", 50, 50, 4, 6, 16, 32, 0.0,
                         trigrams_per_token=per_token, trigram_buckets=100 if per_token else 0)  # fmt: skip
    return build_model(config, word_dropout=word_dropout)


def unknown_words_body(per_token: int):
    """Two bodies of four [UNK] words (id 1) that differ only in their spelling."""
    body = np.ones((2, 4), np.int32)
    grams = np.zeros((2, 4, per_token), np.int32)
    if per_token:
        grams[0, :, 0], grams[1, :, 0] = 7, 42
    return body, np.full((2, 4), 51, np.int32), grams


def test_with_trigrams_the_encoder_tells_two_unknown_words_apart():
    model = spelled_model(3)
    memory, _ = model.encode(*unknown_words_body(3))
    states = np.asarray(memory["states"])
    assert not np.allclose(states[0], states[1])


def test_without_trigrams_two_unknown_words_look_the_same():
    model = spelled_model(0)
    memory, _ = model.encode(*unknown_words_body(0))
    states = np.asarray(memory["states"])
    np.testing.assert_allclose(states[0], states[1])


def test_word_dropout_turns_words_into_unknown_ones_in_training_only():
    model = spelled_model(3, word_dropout=0.9999)
    body, copy, grams = unknown_words_body(3)
    words = body.copy()
    words[:] = [[5, 6, 7, 8], [9, 10, 11, 12]]
    as_unknown, _ = model.encode(body, copy, grams, training=True)  # all [UNK] already: nothing to drop
    dropped, _ = model.encode(words, copy, grams, training=True)
    np.testing.assert_allclose(np.asarray(dropped["states"]), np.asarray(as_unknown["states"]), rtol=1e-5)
    kept, _ = model.encode(words, copy, grams, training=False)
    assert not np.allclose(np.asarray(kept["states"]), np.asarray(as_unknown["states"]))


def test_word_dropout_is_refused_for_the_tutorial_architecture():
    with pytest.raises(StageError, match="--word-dropout is out of range"):
        TrainSettings(architecture="tutorial", word_dropout=0.25).resolved()
    with pytest.raises(ValueError, match="pointer_generator architecture only"):
        build_model(ModelConfig("tutorial", 50, 50, 10, 6, 16, 32), word_dropout=0.25)


def test_a_model_trained_on_trigrams_records_them_and_writes_titles_with_them(spelled):
    from issue_titles.predictor import TitlePredictor

    model = json.loads((spelled["train"] / "model.json").read_text())
    assert model["config"]["trigrams_per_token"] == 10 and model["config"]["trigram_buckets"] == 30_000
    assert model["training"]["word_dropout"] == 0.25
    # Greedy: the trigrams enter in the encoder, which every decoder runs the same way; greedy's decoder traces in
    # a fraction of beam search's time, and beam search against the reference loop is tests/stages/test_beam_search.
    predictor = TitlePredictor.load(spelled["train"], beam_width=1)
    bodies = ["The scheduler crashes on empty input.", "Document the kvcache options."] * 3
    titles = predictor.predict(bodies)
    assert len(titles) == 6 and all(isinstance(title, str) and title for title in titles)
    # the compiled loop and the per-token reference loop agree (its model calls traced: tests/stages/graph_reference)
    assert reference_titles(predictor, bodies[:2]) == titles[:2]


def strip_trigram_fields(folder):
    for name, inner in (("model.json", "config"), ("preprocess.json", None)):
        data = json.loads((folder / name).read_text())
        for key in ("trigrams_per_token", "trigram_buckets"):
            (data[inner] if inner else data).pop(key)
        (folder / name).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def model_without_trigrams(tiny_training, tmp_path_factory):
    """A tiny model trained without trigrams (the default), its files then written as before trigrams existed: a
    copy of the run's one tiny training (tests/conftest.py), which is exactly such a model, instead of a training of
    its own."""
    import shutil

    folder = Path(shutil.copytree(tiny_training / "train", tmp_path_factory.mktemp("no_trigrams") / "train"))
    assert json.loads((folder / "model.json").read_text())["config"]["trigrams_per_token"] == 0  # trained without
    strip_trigram_fields(folder)
    return folder


def test_a_model_from_before_trigrams_still_loads_and_writes_titles(model_without_trigrams):
    from issue_titles.predictor import TitlePredictor

    predictor = TitlePredictor.load(model_without_trigrams, beam_width=1)  # greedy: traced faster, same encoder
    assert predictor.config.trigrams_per_token == 0
    assert predictor.model.trigram_embedding is None
    (title,) = predictor.predict(["When I use the parser it crashes on empty input."])
    assert isinstance(title, str) and title


def test_a_model_and_text_description_that_disagree_on_trigrams_are_refused(model_without_trigrams, tmp_path):
    import shutil

    from issue_titles.predictor import TitlePredictor

    folder = Path(shutil.copytree(model_without_trigrams, tmp_path / "model"))
    summary = json.loads((folder / "preprocess.json").read_text())
    (folder / "preprocess.json").write_text(json.dumps(summary | {"trigrams_per_token": 10, "trigram_buckets": 99}))
    with pytest.raises(StageError, match="trigrams_per_token 10 does not match the model's 0"):
        TitlePredictor.load(folder)


def test_train_refuses_bad_trigram_settings_naming_preprocess_json(spelled, tmp_path):
    import shutil

    from issue_titles.train import load_training_data

    folder = Path(shutil.copytree(spelled["pre_process"], tmp_path / "pre_process"))
    summary = json.loads((folder / "preprocess.json").read_text())
    (folder / "preprocess.json").write_text(json.dumps(summary | {"trigrams_per_token": "10"}))
    with pytest.raises(StageError, match="trigrams_per_token '10'") as error:
        load_training_data(folder)
    assert str(folder / "preprocess.json") in str(error.value)
