"""BLEU, chrF and ROUGE against hand-checked values and sacreBLEU itself, their signatures, the
placeholder accuracy on hand-made cases, and their edge cases."""
import re

import pytest

from llmjax.evaluation.text_scores import bleu, chrf, placeholder_accuracy, rouge, signatures, text_scores


def test_exact_match_scores_100_and_disjoint_scores_0():
    refs = ["Return the number of items in the queue.", "Open a file and return a stream."]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in rouge(refs, refs).values())
    other = ["zebra quantum", "lorem ipsum"]
    assert bleu(other, refs) == pytest.approx(0.0)
    assert all(v == 0.0 for v in rouge(other, refs).values())


def test_partial_overlap_by_hand():
    # 6 reference words, 6 hypothesis words, 5 shared unigrams; bigrams: 3 of 5 shared.
    r = rouge(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert r["rouge1"] == pytest.approx(100 * 5 / 6)
    assert r["rouge2"] == pytest.approx(100 * 3 / 5)
    assert r["rougeL"] == pytest.approx(100 * 5 / 6)
    # sacrebleu's corpus BLEU of this pair (brevity penalty 1): geometric mean of 5/6, 3/5, 2/4, 1/3.
    assert bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, rel=1e-6)


def test_mismatched_lengths_and_empty():
    with pytest.raises(ValueError, match="in pairs"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="in pairs"):
        chrf(["a"], [])
    assert text_scores([], []) == {"bleu": 0.0, "chrf": 0.0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_chrf_is_sacrebleus_corpus_chrf_and_signatures_name_the_settings():
    import sacrebleu

    hyps = ["Die Datei wurde geöffnet.", "Kann %s nicht öffnen", "Hallo Welt"]
    refs = ["Die Datei wurde nicht geöffnet.", "%s kann nicht geöffnet werden", "Hallo, Welt!"]
    assert chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0.0 < chrf(hyps, refs) < 100.0 and chrf(refs, refs) == pytest.approx(100.0)
    assert text_scores(hyps, refs)["chrf"] == chrf(hyps, refs)
    sig = signatures()
    assert set(sig) == {"bleu_signature", "chrf_signature"}
    assert "tok:13a" in sig["bleu_signature"] and f"version:{sacrebleu.__version__}" in sig["bleu_signature"]
    assert "nc:6" in sig["chrf_signature"] and "nw:0" in sig["chrf_signature"]  # chrF2, no word n-grams


def _placeholders(text):
    return tuple(sorted(re.findall(r"%\(\w+\)[sd]|%[sd]|\{\d*\}|</?b>", text)))


def test_placeholder_accuracy_over_references_with_placeholders():
    refs = ["Kann %s nicht öffnen", "%d von %(total)s", "<b>Fett</b> {0}", "Keine Platzhalter"]
    hyps = ["%s: öffnen fehlgeschlagen",  # the same placeholder, moved: right
            "%(total)s von %s",  # %d became %s: wrong
            "Fett {0} <b></b>",  # the same multiset in another order: right
            "%s"]  # the reference has none: not counted
    got = placeholder_accuracy(hyps, refs, _placeholders)
    assert got == {"placeholder_examples": 3, "placeholder_accuracy": pytest.approx(100 * 2 / 3)}
    assert placeholder_accuracy(["Kann nicht öffnen"], ["Kann %s nicht öffnen"], _placeholders)[
        "placeholder_accuracy"] == 0.0  # a dropped placeholder
    assert placeholder_accuracy(["a %s"], ["b"], _placeholders) == {"placeholder_examples": 0}
    scores = text_scores(hyps, refs, placeholders=_placeholders)
    assert scores["placeholder_examples"] == 3 and "bleu" in scores and "chrf" in scores
