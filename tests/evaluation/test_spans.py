"""entities and span_scores against seqeval (default, conlleval-compatible mode) on hand-made and
random tag sequences, malformed IOB and odd tags included."""
import random
import warnings

import pytest
from seqeval.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)
from seqeval.metrics.sequence_labeling import get_entities

from llmjax.evaluation.spans import entities, span_scores

HAND_MADE = [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),          # IOB1: I- after O starts a chunk
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # a type switch inside
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
    (["O", "O", "B-ORG", "I-ORG"], [("ORG", 2, 3)]),          # a chunk ending the sentence
    (["S-A", "B-A", "E-A", "I-A"], [("A", 0, 0), ("A", 1, 2), ("A", 3, 3)]),  # IOBES
    ([], []),
    (["O"], []),
]

# Odd tags seqeval reads without a prefix rule: "PER" is role "P", type "ER"; "B" has type "_".
TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "E-PER", "S-LOC", "B", "I",
        "PER", ".", "X-ORG"]


def _sentences(rng, count):
    return [[rng.choice(TAGS) for _ in range(rng.randrange(0, 7))] for _ in range(count)]


def _perturb(rng, sentences):
    return [[tag if rng.random() < 0.7 else rng.choice(TAGS) for tag in s] for s in sentences]


@pytest.mark.parametrize("tags,expected", HAND_MADE)
def test_entities_hand_made(tags, expected):
    assert entities(tags) == expected == get_entities(tags)


def test_entities_match_seqeval_on_random_sequences():
    rng = random.Random(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2000):
            tags = [rng.choice(TAGS) for _ in range(rng.randrange(0, 12))]
            assert entities(tags) == get_entities(tags), tags


def _check_against_seqeval(true, pred):
    scores = span_scores(true, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert scores["precision"] == pytest.approx(precision_score(true, pred))
        assert scores["recall"] == pytest.approx(recall_score(true, pred))
        assert scores["f1"] == pytest.approx(f1_score(true, pred))
        if any(true):
            assert scores["accuracy"] == pytest.approx(accuracy_score(true, pred))
        report = classification_report(true, pred, output_dict=True) if scores["per_type"] else {}
    expected = {name: {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                       "support": row["support"]}
                for name, row in report.items() if not name.endswith(" avg")}
    assert scores["per_type"].keys() == expected.keys()
    for name, row in expected.items():
        assert scores["per_type"][name] == pytest.approx(row), name


def test_span_scores_hand_made():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"], []]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "I-ORG", "I-ORG"], []]
    scores = span_scores(true, pred)
    # PER and ORG found (I- after O starts ORG at the same place), LOC predicted as ORG.
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(5 / 7)
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    _check_against_seqeval(true, pred)


def test_span_scores_match_seqeval_on_random_sentences():
    rng = random.Random(1)
    for _ in range(300):
        true = _sentences(rng, rng.randrange(1, 5))
        _check_against_seqeval(true, _perturb(rng, true))


def test_no_spans_scores_zero():
    scores = span_scores([["O", "O"]], [["O", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]) == (0.0, 0.0, 0.0, 1.0)
    assert scores["per_type"] == {}


def test_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 2 true tags but 1 predicted"):
        span_scores([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        span_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(TypeError, match="sentence 0 is a string"):
        span_scores(["B-PER"], ["B-PER"])
