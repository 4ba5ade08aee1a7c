"""Scores of generated text against references: corpus BLEU (sacrebleu, on detokenised text, its
standard 13a tokenisation) and ROUGE-1/2/L F-measures (rouge-score), both on a 0-100 scale as
papers report them. Both libraries are imported when first used.
"""
from __future__ import annotations

from collections.abc import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: score them in pairs")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU of one reference per hypothesis (0 for no examples)."""
    import sacrebleu

    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures over the examples (0 for no examples)."""
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(ref, hyp)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    n = max(len(hypotheses), 1)
    return {name: 100.0 * total / n for name, total in totals.items()}


def text_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{"bleu", "rouge1", "rouge2", "rougeL"} of the hypotheses."""
    return {"bleu": bleu(hypotheses, references), **rouge(hypotheses, references)}
