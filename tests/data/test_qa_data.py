"""Extractive-QA data: the embedded docstring task, the SQuAD JSON and tfds:squad readers, the
bad-input one-liners, answers as token spans and back, and windows with a stride."""
import itertools
import json
import os

import numpy as np
import pytest

from llmjax.config import UserError
from llmjax.data import docstring_qa, qa_sources, qa_windows
from llmjax.data.tokenizers import ByteTokenizer, CharTokenizer, SentencePieceTokenizer
from llmjax.evaluation.squad import normalize_answer

UNICODE = "Ünïcödé naïve café — 日本語のテキスト 🎉 emoji, then ASCII words follow here. ß and ﬁ ligature."

MODULE = '''"""A module."""


def helper(x):
    """Return x doubled, for the tests.

    More text that is not the summary.
    """
    return 2 * x


class Thing:
    def spin(self, n):
        """Spin n times and
        report back. Nothing else here."""
        return [helper(i) for i in range(n)]

    @property
    def value(self):
        """Get the value."""
        return 1

    @value.setter
    def value(self, v):
        """Set the value now."""
        self._v = v

    def short(self):
        """Too short."""


def escaped():
    """Tab\\tseparated summary text here."""
'''


# ---------------------------------------------------------------- the embedded task


def test_file_examples_find_the_summary_as_the_source_spells_it():
    got = {ex.line: (ex.dropped, q, context, start, answer)
           for ex, q, context, start, answer in docstring_qa.file_examples("m.py", MODULE)}
    dropped, q, context, start, answer = got[4]
    assert (dropped, q, answer) == ("", "What does helper do?", "Return x doubled, for the tests.")
    assert context[start:start + len(answer)] == answer
    dropped, q, context, start, answer = got[13]  # a summary over two lines, cut after its sentence
    assert (dropped, answer) == ("", "Spin n times and\n        report back.")
    assert context[start:start + len(answer)] == answer
    assert got[19][0] == got[24][0] == "ambiguous_name"  # getter and setter in one stretch
    assert got[28][0] == "short_answer" and got[32][0] == "not_plain_text"
    assert not any(normalize_answer(a) in normalize_answer(q) for d, q, _, _, a in got.values() if not d)


def test_long_files_are_cut_into_stretches_of_whole_lines():
    text = "".join(f"def f{i}(x):\n    '''Return the {i}th value of x.'''\n    return x + {i}\n\n"
                   for i in range(200))
    stretches = docstring_qa.context_stretches(text)
    assert stretches[0][0] == 0 and stretches[-1][1] == len(text)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(stretches))  # contiguous
    assert all(b - a <= docstring_qa.CONTEXT_CHARS for a, b in stretches)
    assert all(text[b - 1] == "\n" for _, b in stretches[:-1]) and len(stretches) > 5
    examples = docstring_qa.file_examples("m.py", text)
    assert len(examples) == 200 and not any(ex.dropped for ex, *_ in examples)


def test_the_embedded_task_splits_by_file_and_is_deterministic(tmp_path):
    for i in range(12):  # summaries differ in words (file groups fold digits)
        body = "".join(f"def g{i}_{j}(a):\n    \"\"\"Compute thing {'abcd'[j]} of file {'abcdefghijkl'[i]} here.\"\"\"\n"
                       f"    return a\n\n" for j in range(4))
        (tmp_path / f"mod{i}.py").write_text(body)
    stream = lambda: list(docstring_qa.rows({}, stdlib_dir=str(tmp_path), val_fraction=0.3))
    rows = stream()
    assert rows == stream()
    files = {s: {r[1].split(":")[0] for r in rows if r[0] == s} for s in ("train", "eval")}
    assert files["train"] and files["eval"] and not files["train"] & files["eval"]
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), key=["train", "eval"].index)
    for _, _, question, context, ((start, answer),) in rows:
        assert context[start:start + len(answer)] == answer and answer.startswith("Compute")
        assert docstring_qa.question_name(question) in context


def test_baseline_is_the_first_sentence_after_the_first_mention():
    context = "x = spin(3)  # calls it. Then\ndef spin(n):\n    '''Spin n times.'''\n"
    assert docstring_qa.baseline_answer("spin", context) == "3)  # calls it."
    assert docstring_qa.baseline_answer("missing", context) == ""
    assert docstring_qa.baseline_answer("f", "def f():\n    pass\n\nnext block") == "pass"


# ---------------------------------------------------------------- readers and bad input


def _squad(path, paragraphs):
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(data))


def _paragraph(context, *qas):
    return {"context": context, "qas": [
        {"id": qid, "question": q, "answers": [{"text": t, "answer_start": s} for s, t in answers]}
        for qid, q, answers in qas]}


def test_squad_json_reads_both_splits_and_every_gold_answer(tmp_path):
    ctx = "Paris is the capital of France. It is on the Seine."
    seine, the = ctx.index("Seine"), ctx.index("the Seine")
    _squad(tmp_path / "train.json", [_paragraph(ctx, ("a", "Capital of France?", [(0, "Paris")]),
                                                ("b", "Which river?", [(seine, "Seine")]))])
    _squad(tmp_path / "dev.json", [_paragraph(ctx, ("c", "River?", [(seine, "Seine"), (the, "the Seine")]))])
    stream = qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json")
    rows = list(stream)
    assert rows == [("train", "a", "Capital of France?", ctx, ((0, "Paris"),)),
                    ("train", "b", "Which river?", ctx, ((seine, "Seine"),)),
                    ("eval", "c", "River?", ctx, ((seine, "Seine"), (the, "the Seine")))]
    assert stream.stats["train_examples"] == 2 and stream.stats["eval_answers_per_question"] == 2
    assert [r[1] for r in qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json",
                                             max_examples=1)] == ["a", "c"]


@pytest.mark.parametrize("answers, message", [
    ([(40, "Paris")], r"example 'q1': answer 'Paris' at character 40 lies outside its context of 31"),
    ([(1, "Paris")], r"example 'q1': answer 'Paris' differs from the context at character 1 \('aris "),
    ([], r"example 'q1' has no answer"),
])
def test_bad_answers_are_one_line_naming_the_example(tmp_path, answers, message):
    ctx = "Paris is the capital of France."
    for split in ("train", "dev"):
        _squad(tmp_path / f"{split}.json", [_paragraph(ctx, ("q1", "Capital?", answers))])
    with pytest.raises(UserError, match=message) as e:
        list(qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json"))
    assert "\n" not in str(e.value)


def test_an_empty_split_and_bad_specs_are_one_line(tmp_path):
    _squad(tmp_path / "train.json", [_paragraph("ab", ("q", "A?", [(0, "a")]))])
    _squad(tmp_path / "dev.json", [])
    with pytest.raises(UserError, match="the eval split has no examples"):
        list(qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json"))
    with pytest.raises(UserError, match="the train split has no examples"):
        list(qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json", splits="dev,train"))
    with pytest.raises(UserError, match=r"must hold \{split\}"):
        qa_sources.open_qa(f"squad_json:{tmp_path}/train.json")
    with pytest.raises(UserError, match="the eval file .*nope.json does not exist"):
        qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json", splits="train,nope")
    with pytest.raises(UserError, match="must be one of stdlib_docstring_qa"):
        qa_sources.open_qa("squad:x")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not a readable SQuAD JSON"):
        list(qa_sources.open_qa(f"squad_json:{tmp_path}/{{split}}.json", splits="bad,dev"))


@pytest.fixture()
def mocked_squad(tmp_path, monkeypatch):
    """tfds's real squad builder, prepared-looking metadata, and records from as_data_source_fn:
    mock_data's random answers would not be spans of their contexts."""
    import tensorflow_datasets as tfds
    import tensorflow_datasets.question_answering.squad
    from tensorflow_datasets.core import splits as splits_lib

    b = tfds.builder("squad", data_dir=str(tmp_path), file_format="array_record")
    b.info.set_splits(splits_lib.SplitDict([splits_lib.SplitInfo(
        name=s, shard_lengths=[3], num_bytes=0, filename_template=tfds.core.ShardedFileTemplate(
            data_dir=b.data_dir, dataset_name=b.name, split=s, filetype_suffix="array_record"))
        for s in ("train", "validation")]))
    os.makedirs(b.data_dir)
    b.info.write_to_directory(b.data_dir)
    records = {"train": [{"id": f"t{i}", "title": "T", "question": f"Where is {i}?",
                          "context": f"Number {i} is here.",
                          "answers": {"text": np.array([b"here"], object),
                                      "answer_start": np.array([len(f"Number {i} is "),], np.int32)}}
                         for i in range(3)],
               "validation": [{"id": "v0", "title": "T", "question": "Who?", "context": "Ann and Bob.",
                               "answers": {"text": np.array(["Ann", "Ann and Bob"], object),
                                           "answer_start": np.array([0, 0], np.int32)}}]}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path),
                                as_data_source_fn=lambda self, split, **kw: records[split]):
        yield str(tmp_path), records


def test_tfds_squad_reads_each_split(mocked_squad):
    data_dir, _ = mocked_squad
    rows = list(qa_sources.open_qa("tfds:squad", tfds_data_dir=data_dir))
    assert rows[0] == ("train", "t0", "Where is 0?", "Number 0 is here.", ((12, "here"),))
    assert rows[-1] == ("eval", "v0", "Who?", "Ann and Bob.", ((0, "Ann"), (0, "Ann and Bob")))
    assert len(rows) == 4


def test_tfds_squad_with_a_bad_span_names_the_example(mocked_squad):
    data_dir, records = mocked_squad
    records["train"][1]["answers"]["answer_start"][0] = 3
    with pytest.raises(UserError, match=r"example 't1': answer 'here' differs from the context"):
        list(qa_sources.open_qa("tfds:squad", tfds_data_dir=data_dir))


# ---------------------------------------------------------------- token spans and windows


@pytest.fixture(scope="module")
def tokenizers():
    spm = SentencePieceTokenizer.train([UNICODE * 3, "some ascii text here\n" * 20], 300, "bpe", 50_000)
    return {"byte": ByteTokenizer(), "char": CharTokenizer.train([UNICODE]), "spm": spm}


@pytest.mark.parametrize("name", ["byte", "char", "spm"])
def test_answer_chars_to_tokens_and_back_on_unicode(tokenizers, name):
    tok = tokenizers[name]
    (_, offsets), = tok.encode_with_offsets([UNICODE])
    for answer in ("Ünïcödé", "café", "日本語", "🎉", "ASCII words", "ﬁ ligature."):
        s = UNICODE.index(answer)
        e = s + len(answer)
        first, last = qa_windows.answer_tokens(offsets, s, e)
        cs, ce = qa_windows.token_chars(offsets, first, last)
        assert cs <= s and e <= ce, (answer, cs, ce)  # the tokens cover the answer ...
        assert offsets[first, 1] > s and offsets[last, 0] < e  # ... and every one touches it
        if name != "spm":  # byte and char tokens never straddle a character boundary
            assert UNICODE[cs:ce] == answer
        assert answer in UNICODE[cs:ce] and normalize_answer(answer) in normalize_answer(UNICODE[cs:ce])
    assert qa_windows.answer_tokens(offsets, len(UNICODE), len(UNICODE) + 1) == (-1, -1)


def test_windows_overlap_by_the_stride_and_reach_the_end():
    starts = qa_windows.window_starts(context_len=25, room=10, doc_stride=4)
    assert starts.tolist() == [0, 6, 12, 18]  # the last window [18, 28) reaches token 24
    assert qa_windows.window_starts(10, 10, 4).tolist() == [0]  # fits in one
    assert qa_windows.window_starts(0, 10, 4).tolist() == [0]
    example_W, start_W = qa_windows.window_table(np.array([25, 3]), np.array([10, 7]), 4)
    assert example_W.tolist() == [0, 0, 0, 0, 1] and start_W.tolist() == [0, 6, 12, 18, 0]


def test_an_answer_in_two_windows_and_in_none():
    starts = qa_windows.window_starts(25, 10, 4)
    # Tokens 7..9 lie in windows [0, 10) and [6, 16): both point at them.
    labels = [qa_windows.window_labels(7, 9, s, 10, first_position=5) for s in starts]
    assert labels == [(12, 14), (6, 8), (0, 0), (0, 0)]
    # Tokens 9..16 (8 tokens, more than doc_stride + 1) are whole in no window: all point at 0.
    assert [qa_windows.window_labels(9, 16, s, 10, 5) for s in starts] == [(0, 0)] * 4
    # The last window is shorter than room: an answer past the context's end is in none.
    assert qa_windows.window_labels(20, 24, 18, 7, 5) == (7, 11)


def test_a_question_too_long_for_any_context_is_one_line():
    room = qa_windows.rooms(np.array([5, 60, 62]), seq_len=64, bert_style=True)
    assert room.tolist() == [56, 1, -1]
    with pytest.raises(UserError, match=r"eval example 'q7': its question of 60 tokens leaves 1 context "
                                        r"tokens in a 64-token row.*doc_stride=1.*\(2 such questions\)"):
        qa_windows.check_rooms(room, 1, 64, ["q0", "q7", "q8"], np.array([5, 60, 62]), split="eval")
    qa_windows.check_rooms(room[:1], 16, 64)
