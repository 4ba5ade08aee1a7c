"""Extractive QA: best-span decoding within and across windows on hand-made logits, the lexical
baseline, and the task end to end with a tiny model on created SQuAD JSON."""
import json

import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.evaluation.squad import squad_scores
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.tasks import qa
from tests.helpers import tiny_config

NEG = -50.0


def _logits(L, starts, ends):
    """(1, L, 2) logits: NEG everywhere but the given {position: logit} of starts and ends."""
    out = np.full((1, L, 2), NEG, np.float32)
    for p, v in starts.items():
        out[0, p, 0] = v
    for p, v in ends.items():
        out[0, p, 1] = v
    return out


def _best(logits, first=2, length=6, n_best=20, max_answer_len=30):
    score, s, e = qa.best_window_spans(logits, np.array([first]), np.array([length]), n_best, max_answer_len)
    return float(score[0]), int(s[0]), int(e[0])


def test_the_best_span_is_the_highest_start_plus_end():
    assert _best(_logits(10, {3: 5.0, 4: 1.0}, {5: 4.0, 6: 2.0})) == (9.0, 3, 5)


def test_a_start_after_its_end_is_refused():
    # The highest start (6) lies after the highest end (4): the best valid pair is (3, 4).
    assert _best(_logits(10, {6: 9.0, 3: 2.0}, {4: 8.0})) == (10.0, 3, 4)
    # Start 6 with end 6 (its own low end logit) is valid too and wins when it scores higher.
    assert _best(_logits(10, {6: 9.0, 3: 2.0}, {4: 8.0, 6: 1.5})) == (10.5, 6, 6)


def test_a_span_longer_than_max_answer_len_is_refused():
    logits = _logits(10, {2: 9.0, 5: 1.0}, {7: 9.0, 6: 0.5})
    assert _best(logits, length=8, max_answer_len=6) == (18.0, 2, 7)  # 6 tokens: allowed
    assert _best(logits, length=8, max_answer_len=5) == (10.0, 5, 7)  # 2..7 is 6 > 5 tokens


def test_spans_outside_the_windows_context_are_refused():
    # Positions 0-1 are [CLS] and the question, 8-9 [SEP] and padding: the context is 2..7.
    logits = _logits(10, {0: 20.0, 1: 20.0, 4: 1.0}, {9: 20.0, 5: 1.0})
    assert _best(logits) == (2.0, 4, 5)


def test_only_the_n_best_starts_and_ends_pair_up():
    logits = _logits(10, {5: 9.0, 6: 8.0, 2: 1.0}, {3: 9.0, 4: 8.0, 7: 0.0})
    assert _best(logits, n_best=2)[0] == -np.inf  # only starts 5, 6 and ends 3, 4: none valid
    assert _best(logits, n_best=3) == (10.0, 2, 3)  # the third start and end make valid pairs


def test_the_best_window_wins_across_an_examples_windows():
    score_W = np.array([1.0, 7.0, 3.0, -np.inf, -np.inf, 2.0])
    # example 0: windows 0-2, example 1: windows 3-4 (no valid span), example 2: window 5.
    assert qa.best_windows(score_W, np.array([0, 3, 5]), 6).tolist() == [1, -1, 5]
    assert qa.best_windows(score_W, np.array([0, 3]), 5).tolist() == [1, -1]


def test_the_lexical_baseline_takes_the_sentence_sharing_most_words():
    context = "Paris is big. The Seine flows through Paris in France. Rome is old."
    assert qa.overlap_sentence("Which river flows through Paris?", context) == \
        "The Seine flows through Paris in France."
    assert qa.baseline_prediction("stdlib_docstring_qa", "What does spin do?",
                                  "def spin(n):\n    '''Spin n times.'''") == "n):\n    '''Spin n times."


def test_config_refuses_bad_settings():
    for key, value, message in (("task__n_best", 0, "task.n_best=0"),
                                ("task__splits", "train", "task.splits='train'"),
                                ("task__dataset", "squad:x", "must be one of stdlib_docstring_qa")):
        with pytest.raises(ConfigError, match=message):
            resolve(tiny_config("stdlib", model="bert", task="qa", **{key: value}), num_devices=8)


# ---------------------------------------------------------------- end to end


def _write_squad(tmp_path, long_question=False):
    """train/dev SQuAD JSON: contexts of 60-90 bytes (several 32-byte rows' windows), the answer
    at varying places."""
    words = ["red", "blue", "green", "gold", "grey", "pink", "teal", "navy"]
    for split, n in (("train", 24), ("dev", 6)):
        paragraphs = []
        for i in range(n):
            color = words[i % len(words)]
            context = f"Item {i} sits here. " * (1 + i % 3) + f"Its color is {color}. The end of item {i}."
            question = "What color?" if not (long_question and split == "dev") else "What color " * 4
            paragraphs.append({"context": context, "qas": [{
                "id": f"{split}{i}", "question": question,
                "answers": [{"text": color, "answer_start": context.index(f"is {color}") + 3}]}]})
        (tmp_path / f"{split}.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    return f"squad_json:{tmp_path}/{{split}}.json"


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_qa_trains_and_scores_end_to_end(tmp_path, family):
    spec = _write_squad(tmp_path)
    cfg = resolve(tiny_config("stdlib", model=family, task="qa", task__dataset=spec, task__doc_stride=8,
                              task__max_answer_len=8, train__num_steps=2, train__eval_every=2,
                              train__eval_steps=0), num_devices=8)
    msgs = []
    out = train_and_evaluate(cfg, str(tmp_path / "run"), log=msgs.append)
    line = next(m for m in msgs if m.startswith("data: 24 train questions"))
    assert "of them hold the answer" in line and "with a context of more than one window" in line
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("exact_match", "f1", "loss", "baseline_f1", "baseline_exact_match", "baseline"):
        assert key in results, key
    assert out["questions"] == 6 and 0.0 <= out["f1"] <= 100.0
    assert "the context sentence sharing the most words" in results["baseline"]
    predictions = json.loads((tmp_path / "run" / "eval_predictions.json").read_text())
    assert sorted(predictions) == [f"dev{i}" for i in range(6)]  # SQuAD's {id: answer}, rescored by id:
    golds = [[["red", "blue", "green", "gold", "grey", "pink"][int(k[3:])]] for k in predictions]
    assert squad_scores(list(predictions.values()), golds)["f1"] == pytest.approx(out["f1"])


def test_a_question_too_long_for_the_rows_stops_before_training(tmp_path):
    spec = _write_squad(tmp_path, long_question=True)
    cfg = resolve(tiny_config("stdlib", model="bert", task="qa", task__dataset=spec, task__doc_stride=8),
                  num_devices=8)
    with pytest.raises(ConfigError, match=r"eval example 'dev0': its question of 44 tokens leaves -15 "
                                          r"context tokens in a 32-token row") as e:
        train_and_evaluate(cfg, str(tmp_path / "run"), log=lambda _: None)
    saved = tmp_path / "run" / "checkpoints"
    assert "\n" not in str(e.value) and not (saved.exists() and any(saved.iterdir()))
