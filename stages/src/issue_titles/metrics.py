"""Title quality: ROUGE-L F1 (rouge-score, Porter stemming) and corpus BLEU (sacrebleu, lower-cased).

Both compare lower-cased words: the model writes lower-case titles, so case would only penalise it, not the
baseline. The lead-words baseline is the first `LEAD_WORDS` whitespace-separated words of the body.
"""

from collections.abc import Sequence

LEAD_WORDS = 7


def lead_words(body: str, count: int = LEAD_WORDS) -> str:
    return " ".join(body.split()[:count])


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over pairs (0..1)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    total = sum(scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references))
    return total / len(references)


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
