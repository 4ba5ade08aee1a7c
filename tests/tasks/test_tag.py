"""Token labelling: word tags aligned to pieces, rows in each family's layout, the host decode
of word tags (cut words predicted O), the baseline, and a tiny run end to end."""
import json

import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.data.ast_roles import label_source
from llmjax.data.tagged import FrequentTag, join_words, words_of
from llmjax.data.tokenizers import ByteTokenizer, CharTokenizer, SentencePieceTokenizer
from llmjax.evaluation.spans import span_scores
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.tasks.tag import align
from tests.helpers import tiny_config

CODE = 'def größe(self, ñ=1):\n    return self.wert(ñ, k="😀")  # é\n'
WORDS = ["Grüße", "aus", "😀x", "Köln", "—", "Ülm"]


def _texts():
    text, spans_Nx2 = join_words(WORDS)
    code_spans, _ = label_source(CODE)
    return [text, CODE, ""], [spans_Nx2, code_spans, np.zeros((0, 2), np.int32)]


def _check_first_pieces(tok, texts, spans):
    for text, spans_Nx2, (ids, first_N) in zip(texts, spans, align(tok, texts, spans)):
        assert ids.dtype == np.int32 and first_N.dtype == np.int32 and len(first_N) == len(spans_Nx2)
        assert tok.decode(ids) == text  # the segments' pieces are the whole text, in order
        assert (first_N >= 0).all() and (np.diff(first_N) > 0).all()
        yield text, spans_Nx2, ids, first_N


def test_align_labels_the_first_piece_of_each_word_on_unicode_text():
    texts, spans = _texts()
    tok = ByteTokenizer()  # a word of multi-byte characters has several pieces: the first is labelled
    for text, spans_Nx2, ids, first_N in _check_first_pieces(tok, texts, spans):
        for (s, _), f in zip(spans_Nx2.tolist(), first_N.tolist()):
            assert f == len(text[:s].encode("utf-8")) and ids[f] == text[s].encode("utf-8")[0]
    tok = CharTokenizer.train(texts)
    for text, spans_Nx2, ids, first_N in _check_first_pieces(tok, texts, spans):
        np.testing.assert_array_equal(first_N, spans_Nx2[:, 0])


def test_align_with_sentencepiece_pieces_never_span_two_words():
    texts, spans = _texts()
    tok = SentencePieceTokenizer.train([CODE * 20, " ".join(WORDS * 20)], 300, "bpe", 100_000)
    for text, spans_Nx2, ids, first_N in _check_first_pieces(tok, texts, spans):
        for k, ((s, e), f) in enumerate(zip(spans_Nx2.tolist(), first_N.tolist())):
            before, through = tok.decode(ids[:f]), tok.decode(ids[:f + 1])
            assert len(before) <= s < len(through)  # the first piece that reaches into the word
            end = first_N[k + 1] if k + 1 < len(first_N) else len(ids)
            assert len(tok.decode(ids[:end])) >= e  # its pieces end before the next word's first


# ---------------------------------------------------------------- a prepared task


SENTENCES = [(["Grüße", "aus", "Köln", "am", "Rhein"], ["O", "O", "B-LOC", "O", "B-LOC"]),
             (["Ada", "Lovelace", "schrieb", "über", "Babbage"], ["B-PER", "I-PER", "O", "O", "B-PER"]),
             (["Ünal", "zog", "nach", "Zürich"], ["B-PER", "O", "O", "B-LOC"])]


def _prepared(tmp_path, family, seq_len=24, **overrides):
    from llmjax.tasks import registry
    for name, examples in (("train", SENTENCES * 6), ("dev", SENTENCES[::-1] * 3)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"tokens": t, "tags": g}) + "\n"
                                                        for t, g in examples), encoding="utf-8")
    spec = f"jsonl:{tmp_path}/train.jsonl,{tmp_path}/dev.jsonl"
    settings = dict(data__seq_len=seq_len, task__dataset=spec, train__batch_size=8, train__eval_steps=0)
    cfg = resolve(tiny_config("stdlib", model=family, task="tag", **{**settings, **overrides}), num_devices=8)
    task = registry.build(cfg)
    msgs = []
    task.prepare(str(tmp_path / "run"), msgs.append, resuming=False)
    return task, msgs


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_rows_label_each_words_first_piece_and_ignore_the_rest(tmp_path, family):
    """Byte pieces: a word's first byte, after [CLS] for BERT, carries its tag; every other
    position (later bytes, spaces, specials, padding, what the row cut off) is -1."""
    task, msgs = _prepared(tmp_path, family)
    bert = family == "bert"
    room = 24 - (2 if bert else 1)
    assert task.tag_names == ("O", "B-LOC", "B-PER", "I-PER")
    cut = 0
    for step in range(3):
        idx = task._train_order.indices(step)
        batch = task.train_batch(step)
        for row, i in enumerate(idx.tolist()):
            tokens, tags = SENTENCES[i % 3]
            text, spans_Nx2 = join_words(tokens)
            want = np.full(24, -1, np.int32)
            for (s, _), tag in zip(spans_Nx2.tolist(), tags):
                at = len(text[:s].encode("utf-8"))
                if at < room:
                    want[at + bert] = task.tag_names.index(tag)
            np.testing.assert_array_equal(batch["labels"][row], want)
            first = batch["inputs"][row, 0]
            assert first == (task.tokenizer.cls_id if bert else text.encode("utf-8")[0])
    for tokens, _ in SENTENCES * 6:
        text, spans_Nx2 = join_words(tokens)
        cut += sum(len(text[:s].encode("utf-8")) >= room for s in spans_Nx2[:, 0].tolist())
    assert any(f"cut off {cut:,} of {sum(len(t) for t, _ in SENTENCES) * 6:,} train words" in m for m in msgs)
    assert cut > 0
    # The labelled positions of the whole batch are the loss's denominator.
    assert float(task.denominators(batch)["labelled"]) == float(np.sum(batch["labels"] >= 0))


def test_the_host_decode_scores_word_tags_with_cut_words_as_o(tmp_path, monkeypatch):
    """An oracle that predicts every labelled position right: what it misses is exactly the
    words the rows cut off, predicted O; the baseline is FrequentTag's, scored the same way."""
    task, _ = _prepared(tmp_path, "bert")
    taken = []
    real_take = task._take
    monkeypatch.setattr(task, "_take", lambda split, idx: taken.append(real_take(split, idx)) or taken[-1])
    oracle = lambda params, inputs: np.maximum(taken[-1]["labels"], 0)  # noqa: E731
    monkeypatch.setattr(task, "_predictor", lambda model: oracle)
    got = task.decoded_metrics(None, None)
    true, pred = [], []
    for tokens, tags in SENTENCES[::-1] * 3:
        text, spans_Nx2 = join_words(tokens)
        kept = [len(text[:s].encode("utf-8")) < 22 for s in spans_Nx2[:, 0].tolist()]
        true.append(tags)
        pred.append([t if k else "O" for t, k in zip(tags, kept)])
    want = span_scores(true, pred)
    assert want["recall"] < 1.0 and want["precision"] == 1.0
    for k in ("precision", "recall", "f1"):
        assert got[f"span_{k}"] == pytest.approx(want[k])
    assert got["accuracy"] == pytest.approx(want["accuracy"]) and got["per_type"] == want["per_type"]
    base = FrequentTag(4)
    for tokens, tags in SENTENCES * 6:
        base.add(tokens, [task.tag_names.index(t) for t in tags])
    predicted = [[task.tag_names[t] for t in base.predict(words_of(*join_words(tokens)))]
                 for tokens, _ in SENTENCES[::-1] * 3]
    assert task.baselines()["baseline_span_f1"] == pytest.approx(span_scores(true, predicted)["f1"])


def test_a_family_without_a_token_head_is_refused_at_resolve():
    with pytest.raises(ConfigError, match=r"config.task.name='tag'.*it needs a token head"):
        resolve(tiny_config("stdlib", model="encdec", task="tag"), num_devices=8)


def test_tag_end_to_end_on_the_embedded_task(tmp_path):
    """A tiny GPT, a few steps on stdlib_roles: the baseline printed at the start, the eval line
    beside it, span metrics and the baseline in results.json."""
    cfg = resolve(tiny_config("stdlib", model="gpt", task="tag", data__seq_len=64, task__max_examples=64,
                              train__num_steps=4, train__eval_every=4), num_devices=8)
    msgs = []
    out = train_and_evaluate(cfg, str(tmp_path / "run"), log=msgs.append)
    assert any(m.startswith("eval: 2 batches of 8 (16 examples); baseline (each word's most frequent "
                            "train tag): span P/R/F1") for m in msgs)
    assert any(m.startswith("data stdlib_roles: 9 tags; train 64 examples") for m in msgs)
    done = next(m for m in msgs if m.startswith("done in"))
    assert "span P/R/F1" in done and "(most frequent tag: span F1" in done
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for k in ("loss", "accuracy", "span_precision", "span_recall", "span_f1", "per_type",
              "baseline_span_f1", "baseline_accuracy"):
        assert k in results, k
    assert 0.0 <= out["span_f1"] <= 1.0 and set(results["per_type"]) <= {
        "def", "class", "param", "assign", "call", "attr", "import", "kwarg"}
