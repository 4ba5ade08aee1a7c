"""Scores of generated text against references, on a 0-100 scale as papers report them: corpus
BLEU and chrF (sacreBLEU on detokenised text: BLEU with its standard 13a tokenisation, chrF2 of
character n-grams up to 6 and no word n-grams, sacreBLEU's defaults), ROUGE-1/2/L F-measures
(rouge-score), and the placeholder accuracy translators check. `signatures` names the exact
sacreBLEU settings, for a run to print and store once. The libraries are imported when first used.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: score them in pairs")


@functools.cache
def _sacrebleu_metrics() -> dict[str, Any]:
    """sacreBLEU's BLEU and chrF objects with their default settings (what signatures() names)."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(), "chrf": CHRF()}


def _sacrebleu(name: str, hypotheses: Sequence[str], references: Sequence[str]) -> float:
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    return float(_sacrebleu_metrics()[name].corpus_score(list(hypotheses), [list(references)]).score)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU of one reference per hypothesis (0 for no examples)."""
    return _sacrebleu("bleu", hypotheses, references)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF2 (character n-grams 1-6, no word n-grams) of one reference per hypothesis (0
    for no examples)."""
    return _sacrebleu("chrf", hypotheses, references)


def signatures() -> dict[str, str]:
    """{"bleu_signature", "chrf_signature"}: sacreBLEU's strings naming the settings of bleu and
    chrf (references, case, tokenisation, n-gram orders, version), for results to be comparable."""
    return {f"{name}_signature": str(metric.get_signature()) for name, metric in _sacrebleu_metrics().items()}


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


def placeholder_accuracy(hypotheses: Sequence[str], references: Sequence[str],
                         placeholders: Callable[[str], tuple[str, ...]]) -> dict[str, float]:
    """{"placeholder_accuracy": the share (0-100) of hypotheses whose placeholders equal their
    reference's, "placeholder_examples": over how many} among the examples whose reference has at
    least one placeholder (accuracy absent where none has). placeholders(text): a text's
    placeholders as a sorted tuple (printf/format specifiers, markup tags): a translation that
    drops or alters one breaks the program that fills it in, whatever its BLEU."""
    _check(hypotheses, references)
    pairs = [(placeholders(hyp), wanted) for hyp, ref in zip(hypotheses, references)
             if (wanted := placeholders(ref))]
    out: dict[str, float] = {"placeholder_examples": len(pairs)}
    if pairs:
        out["placeholder_accuracy"] = 100.0 * sum(got == wanted for got, wanted in pairs) / len(pairs)
    return out


def text_scores(hypotheses: Sequence[str], references: Sequence[str],
                placeholders: Callable[[str], tuple[str, ...]] | None = None) -> dict[str, float]:
    """{"bleu", "chrf", "rouge1", "rouge2", "rougeL"} of the hypotheses, and placeholder_accuracy's
    keys when given a placeholders function."""
    out = {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references),
           **rouge(hypotheses, references)}
    if placeholders is not None:
        out.update(placeholder_accuracy(hypotheses, references, placeholders))
    return out
