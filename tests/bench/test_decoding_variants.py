"""The decoding-variants bench: its variants change only how a trained model picks titles, and it reports them."""

import dataclasses

import pytest

from bench.decoding_variants import main, reranked, titles_for
from issue_titles.csvio import write_issues
from issue_titles.predictor import TitlePredictor
from tests.tiny_model import tiny_issues, tiny_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained model and a split folder whose held-out rows come from two github repositories."""
    root = tmp_path_factory.mktemp("variants")
    model = tiny_train(root / "work")
    split = root / "work" / "split"
    issues = tiny_issues(rows=24, seed=11)
    heldout = [dataclasses.replace(issue, issue_url=f"https://github.com/acme/{'ab'[n % 2]}/pull/{n + 1}")
               for n, issue in enumerate(issues)]  # fmt: skip
    write_issues(split / "heldout.csv", heldout)
    return model, split, [issue.body for issue in heldout]


def test_copy_factor_one_is_the_plain_decoder(trained):
    model, _, bodies = trained
    assert titles_for("copy:1", model, bodies) == TitlePredictor.load(model).predict(bodies)


def test_a_reranked_title_is_the_beam_title_or_an_extractive_candidate(trained):
    model, _, bodies = trained
    predictor = TitlePredictor.load(model)
    beam = predictor.predict(bodies)
    chosen = reranked(predictor, bodies, beam, alpha=2.0)
    assert len(chosen) == len(bodies)
    for body, beam_title, title in zip(bodies, beam, chosen):
        assert title == beam_title or all(word.lower().strip(".,;`") in body.lower() for word in title.split())


def test_main_prints_one_row_per_variant_with_the_held_out_margin(trained, capsys):
    model, split, _ = trained
    assert main(["--model", str(model), "--split", str(split), "--variants", "beam:1:0,copy:1.5,rerank:2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("| beam", "| copy", "| rerank"))]
    assert [row.split(" | ")[0] for row in rows] == ["| beam:1:0", "| copy:1.5", "| rerank:2"]
    assert all("acme/" in row for row in rows)  # the smallest margin names its repository
