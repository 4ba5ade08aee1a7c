"""SQuAD v1.1 exact match and token F1 on hand-made cases worked out from the script's definitions."""
import pytest

from llmjax.evaluation.squad import exact_match, f1, normalize_answer, squad_scores


@pytest.mark.parametrize("text,expected", [
    ("The Cat", "cat"),
    ("  an  apple, a pear & THE plum! ", "apple pear plum"),
    ("theatre another", "theatre another"),   # articles only as whole words
    ("U.S.A.", "usa"),                        # punctuation removed, not replaced by spaces
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_after_normalisation_and_best_gold():
    assert exact_match("The cat.", ["a Cat"]) == 1.0
    assert exact_match("cat", ["dog", "the cat", "mouse"]) == 1.0
    assert exact_match("cats", ["cat"]) == 0.0


def test_f1_partial_overlap_by_hand():
    # tokens "cat sat" against "cat sat down": precision 1, recall 2/3, F1 0.8.
    assert f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    # repeated tokens count once per match: "cat cat" vs "cat": overlap 1, p 1/2, r 1, F1 2/3.
    assert f1("cat cat", ["cat"]) == pytest.approx(2 / 3)
    # the best of several golds is kept.
    assert f1("the cat sat", ["dog", "cat sat down", "cat"]) == pytest.approx(0.8)


def test_empty_prediction_and_no_overlap():
    assert f1("", ["cat"]) == 0.0 and exact_match("", ["cat"]) == 0.0
    assert f1("dog", ["cat"]) == 0.0
    assert f1("the", ["a"]) == 0.0 and exact_match("the", ["a"]) == 1.0  # v1.1: both empty after normalising


def test_squad_scores_in_percent():
    scores = squad_scores(["the cat sat", "Paris", "nothing"], [["a cat sat down"], ["paris", "Lyon"], ["x"]])
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (0.8 + 1.0 + 0.0) / 3)
    assert squad_scores([], []) == {"exact_match": 0.0, "f1": 0.0}


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="2 predictions but 1 gold answer lists"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty list of gold answer strings"):
        f1("a", [])
    with pytest.raises(ValueError, match="non-empty list of gold answer strings"):
        exact_match("a", "a")
