"""Extractive-QA scores with the SQuAD v1.1 evaluation script's definitions, so numbers compare
with published ones: answers are normalised (lower case, punctuation and the articles a/an/the
removed, whitespace collapsed), exact match and token F1 (bag-of-tokens overlap) are taken against
every gold answer and the best kept, and the means are reported in percent as the script prints.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The script's normalisation: lower, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:  # v1.1: also 0 when both are empty
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best(score: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    if isinstance(golds, str) or not golds:
        raise ValueError(f"gold answers {golds!r} for prediction {prediction!r}: pass a non-empty "
                         "list of gold answer strings per question")
    return max(score(prediction, gold) for gold in golds)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer, else 0.0."""
    return _best(_exact, prediction, golds)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token F1 (0-1) of the prediction against the gold answers."""
    return _best(_f1, prediction, golds)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"}: means over the questions in percent (0 for no questions)."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists: "
                         "pass one list of gold answers per prediction")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    n = len(predictions)
    return {"exact_match": 100.0 * sum(map(exact_match, predictions, golds)) / n,
            "f1": 100.0 * sum(map(f1, predictions, golds)) / n}
