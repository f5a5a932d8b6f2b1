"""Title quality: ROUGE-L F1 (rouge-score, Porter stemming) and corpus BLEU (sacrebleu, lower-cased), and the
extractive baselines a model must beat.

Both compare lower-cased words: the model writes lower-case titles, so case would only penalise it, not the
baselines. The baselines copy the body's opening, which is what a title often is:

- `lead_k`: the first k words, k chosen on the training rows (`best_lead_words`; the tutorial era used 7);
- `first_sentence`: the body up to its first `.`, `!` or `?` followed by a space, at most 12 words;
- `lead_k_clean`, `first_sentence_clean`: the same on the body after `clean_body` (template headings such as
  "## Summary" or "## Which problem is this PR solving?" removed), since the raw versions copy those verbatim.
"""

import functools
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

LEAD_WORDS = 7  # the lead baseline's length when no training rows are at hand to choose it
LEAD_CHOICES = tuple(range(3, 16))
FIRST_SENTENCE_CAP = 12
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def lead_words(body: str, count: int = LEAD_WORDS) -> str:
    return " ".join(body.split()[:count])


def first_sentence(body: str, cap: int = FIRST_SENTENCE_CAP) -> str:
    return " ".join(_SENTENCE_END.split(body.strip(), maxsplit=1)[0].split()[:cap])


@functools.cache
def _rouge_l_scorer() -> Any:
    """rouge-score's ROUGE-L scorer with its default tokenizer (lower-cased alphanumeric words, Porter stems of those
    longer than 3 letters) applied word by word, each word's tokens remembered. Choosing the lead baseline scores 13
    prefixes of up to 2,000 bodies against the same titles: stemming the same words again was most of its time.
    Word by word gives the same tokens: that tokenizer turns every non-alphanumeric character, whitespace included,
    into a separator, and lower-cases character by character."""
    from rouge_score import rouge_scorer, tokenizers

    class WordByWordTokenizer(tokenizers.Tokenizer):
        def __init__(self) -> None:
            self.word_tokens = functools.lru_cache(maxsize=1 << 16)(
                tokenizers.DefaultTokenizer(use_stemmer=True).tokenize
            )

        def tokenize(self, text: str) -> list[str]:
            return [token for word in text.split() for token in self.word_tokens(word)]

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=WordByWordTokenizer())


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each pair (0..1)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = _rouge_l_scorer()
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over pairs (0..1)."""
    scores = rouge_l_scores(predictions, references)
    return sum(scores) / len(scores) if scores else 0.0


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0..100), sacrebleu's 13a tokenizer, lower-cased."""
    import sacrebleu

    if not references:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)], lowercase=True).score)


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    return {
        "rouge_l": round(rouge_l(predictions, references), 4),
        "bleu": round(bleu(predictions, references), 2),
    }


def mean_words(texts: Sequence[str]) -> float:
    return sum(len(text.split()) for text in texts) / len(texts) if texts else 0.0


def best_lead_words(bodies: Sequence[str], titles: Sequence[str], sample: int = 2000, seed: int = 0) -> int:
    """The k in LEAD_CHOICES whose first-k-words baseline scores the best mean ROUGE-L on (a sample of) these rows."""
    if not bodies:
        return LEAD_WORDS
    rows = list(zip(bodies, titles, strict=True))
    if len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    references = [title for _, title in rows]
    return max(LEAD_CHOICES, key=lambda k: (rouge_l([lead_words(body, k) for body, _ in rows], references), -k))


def extractive_baselines(lead_k: int) -> dict[str, Callable[[str], str]]:
    """Name -> body-to-title function, for every baseline metrics.json reports."""
    from issue_titles.text import clean_body

    return {
        "lead_k": lambda body: lead_words(body, lead_k),
        "first_sentence": first_sentence,
        "lead_k_clean": lambda body: lead_words(clean_body(body), lead_k),
        "first_sentence_clean": lambda body: first_sentence(clean_body(body)),
    }
