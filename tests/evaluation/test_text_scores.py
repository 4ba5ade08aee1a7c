"""BLEU and ROUGE against hand-checked values, and their edge cases."""
import pytest

from llmjax.evaluation.text_scores import bleu, rouge, text_scores


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
    assert text_scores([], []) == {"bleu": 0.0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
