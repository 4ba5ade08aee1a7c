"""Labelled-span (entity) scores of per-token tags, with seqeval's default definitions.

seqeval's default mode is the conlleval one that papers on CoNLL NER and chunking report, so
scores here compare with theirs. A tag's first character is its role (B, I, E, S, O; anything
else is kept, as seqeval keeps it) and the text after the first "-" its type ("_" when there is
none, so "O" has type "_"). Malformed IOB is read leniently: an I- after O or after another type
starts a chunk, a type change ends one. Sentences are chained with one "O" between them, so spans
(type, start, end), end inclusive, are offsets into that chain (seqeval's offsets). Scores are
micro over spans: a predicted span counts only with its exact type and both ends; precision,
recall and F1 are 0 where undefined.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def _split(tag: str) -> tuple[str, str]:
    """(role, type) as seqeval reads them: "B-PER" -> ("B", "PER"), "O" -> ("O", "_")."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends(prev_role: str, role: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk ends just before this token."""
    if prev_role in "ES":
        return True
    if prev_role in "BI" and role in "BSO":
        return True
    return prev_role not in "O." and prev_type != type_


def _starts(prev_role: str, role: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk starts at this token."""
    if role in "BS":
        return True
    if prev_role in "ESO" and role in "EI":
        return True
    return role not in "O." and prev_type != type_


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks (type, start, end inclusive) of one tag sequence, in order."""
    chunks = []
    prev_role, prev_type, begin = "O", "_", 0
    for i, tag in enumerate([*tags, "O"]):  # the closing "O" ends a chunk that ends the sequence
        if not tag:
            raise ValueError(f"tag {i} is empty: every token needs a tag such as 'O' or 'B-PER'")
        role, type_ = _split(tag)
        if _ends(prev_role, role, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _starts(prev_role, role, prev_type, type_):
            begin = i
        prev_role, prev_type = role, type_
    return chunks


def _chain(sentences: Sequence[Sequence[str]]) -> list[str]:
    """The sentences' tags with an "O" after each (seqeval's concatenation)."""
    return [tag for sentence in sentences for tag in (*sentence, "O")]


def _div(num: int, den: int) -> float:
    return num / den if den else 0.0


def _prf(correct: int, predicted: int, true: int) -> dict[str, float]:
    precision, recall = _div(correct, predicted), _div(correct, true)
    f1 = _div(2 * precision * recall, precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def span_scores(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro span precision/recall/F1, per-type scores and token accuracy of tagged sentences.

    Returns {"precision", "recall", "f1", "accuracy", "spans_true", "spans_pred", "per_type":
    {type: {"precision", "recall", "f1", "support"}}} with every type seen in either side.
    """
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true sentences but {len(pred)} predicted: pass one tag "
                         "sequence per sentence on both sides")
    for i, (t, p) in enumerate(zip(true, pred)):
        if isinstance(t, str) or isinstance(p, str):
            raise TypeError(f"sentence {i} is a string: pass each sentence as a list of tags")
        if len(t) != len(p):
            raise ValueError(f"sentence {i} has {len(t)} true tags but {len(p)} predicted: "
                             "tag every token once on both sides")
    true_spans, pred_spans = set(entities(_chain(true))), set(entities(_chain(pred)))
    correct = true_spans & pred_spans
    counts = {name: Counter(span[0] for span in spans)
              for name, spans in (("true", true_spans), ("pred", pred_spans), ("correct", correct))}
    per_type = {
        type_: {**_prf(counts["correct"][type_], counts["pred"][type_], counts["true"][type_]),
                "support": counts["true"][type_]}
        for type_ in sorted(counts["true"].keys() | counts["pred"].keys())
    }
    tokens = sum(len(t) for t in true)
    same = sum(a == b for t, p in zip(true, pred) for a, b in zip(t, p))
    return {**_prf(len(correct), len(pred_spans), len(true_spans)),
            "accuracy": _div(same, tokens),
            "spans_true": len(true_spans), "spans_pred": len(pred_spans),
            "per_type": per_type}
