"""Tagged data for token labelling: jsonl files and their splits, conll2003 through tfds, the
baseline, and each bad input's one-line error."""
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from llmjax.config import ConfigError
from llmjax.data.tagged import FrequentTag, TaggedStream, join_words, open_tagged, words_of


def _write(path, examples):
    path.write_text("".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in examples), encoding="utf-8")


SENTENCES = [(["Grüße", "aus", "Köln"], ["O", "O", "B-LOC"]),
             (["Ada", "Lovelace", "wrote"], ["B-PER", "I-PER", "O"]),
             (["in", "London"], ["O", "B-LOC"])]


def test_words_joined_by_single_spaces_read_back():
    text, spans_Nx2 = join_words(["Grüße", "aus", "😀x", "Köln"])
    assert text == "Grüße aus 😀x Köln" and spans_Nx2.dtype == np.int32
    assert words_of(text, spans_Nx2) == ["Grüße", "aus", "😀x", "Köln"]
    assert join_words([])[0] == "" and join_words([])[1].shape == (0, 2)


def test_jsonl_named_files_and_the_tail_split(tmp_path):
    _write(tmp_path / "train.jsonl", SENTENCES[:2])
    _write(tmp_path / "dev.jsonl", [SENTENCES[2]])
    stream = open_tagged(f"jsonl:{tmp_path}/train.jsonl,{tmp_path}/dev.jsonl")
    got = list(stream)
    assert stream.tag_names == ("O", "B-LOC", "B-PER", "I-PER")  # train's tags, O first
    assert [(r[0], r[1]) for r in got] == [
        ("train", f"{tmp_path}/train.jsonl:1"), ("train", f"{tmp_path}/train.jsonl:2"),
        ("eval", f"{tmp_path}/dev.jsonl:1")]
    assert got[0][2] == "Grüße aus Köln" and words_of(got[0][2], got[0][3]) == ["Grüße", "aus", "Köln"]
    assert [stream.tag_names[t] for t in got[1][4]] == ["B-PER", "I-PER", "O"]
    assert stream.stats["train_words"] == 6 and stream.stats["eval_per_tag"]["B-LOC"] == 1
    # One file: its last val_fraction of the examples are eval; max_examples caps train.
    _write(tmp_path / "all.jsonl", SENTENCES * 4)
    stream = open_tagged(f"jsonl:{tmp_path}/all.jsonl", val_fraction=0.25)
    got = list(stream)
    assert [r[0] for r in got] == ["train"] * 9 + ["eval"] * 3
    assert stream.stats["files"] == {"train": 1, "eval": 1, "eval_from_example": 9}
    got = list(open_tagged(f"jsonl:{tmp_path}/all.jsonl", val_fraction=0.25, max_examples=2))
    assert [r[0] for r in got] == ["train"] * 2 + ["eval"] * 3


def test_jsonl_split_by_file_from_ten_files(tmp_path):
    for i in range(30):
        _write(tmp_path / f"part{i:02d}.jsonl", SENTENCES)
    stream = open_tagged(f"jsonl:{tmp_path}/*.jsonl", val_fraction=0.2)
    got = list(stream)
    files = {s: {r[1].rsplit(":", 1)[0] for r in got if r[0] == s} for s in ("train", "eval")}
    assert files["train"] and files["eval"] and not files["train"] & files["eval"]
    assert stream.stats["files"] == {"train": len(files["train"]), "eval": len(files["eval"])}


@pytest.mark.parametrize("lines, error", [
    ([{"tokens": ["a", "b"], "tags": ["O"]}], r"bad\.jsonl:2: 2 tokens but 1 tags: give one tag per token"),
    (["not json"], r"bad\.jsonl:2: not JSON"),
    ([{"tokens": ["a"]}], r'bad\.jsonl:2: each line must be an object with "tokens" and "tags"'),
    ([{"tokens": ["a", ""], "tags": ["O", "O"]}], r"bad\.jsonl:2: token 1 is '': tokens must be non-empty"),
])
def test_jsonl_bad_lines_name_the_file_and_line(tmp_path, lines, error):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"tokens": ["x"], "tags": ["O"]}) + "\n"
                                        + "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n"
                                                  for x in lines))
    with pytest.raises(ValueError, match=error) as e:
        open_tagged(f"jsonl:{tmp_path}/bad.jsonl")
    assert "\n" not in str(e.value)


def test_jsonl_tag_sets_that_disagree_and_empty_splits(tmp_path):
    _write(tmp_path / "train.jsonl", SENTENCES[:1])
    _write(tmp_path / "dev.jsonl", SENTENCES[1:])
    with pytest.raises(ValueError, match=r"eval tags B-PER, I-PER never occur in train \(the tag sets "
                                         r"disagree between splits\)"):
        open_tagged(f"jsonl:{tmp_path}/train.jsonl,{tmp_path}/dev.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"the eval files hold no examples"):
        open_tagged(f"jsonl:{tmp_path}/train.jsonl,{tmp_path}/empty.jsonl")
    with pytest.raises(ConfigError, match=r"config.task.dataset='jsonl:.*nothing\*.jsonl': the glob .* "
                                          "matches no files"):
        open_tagged(f"jsonl:{tmp_path}/nothing*.jsonl")
    with pytest.raises(ConfigError, match="must be one of stdlib_roles, tfds:"):
        open_tagged("conll.txt")


def test_an_empty_split_fails_when_the_stream_ends():
    row = ("train", "t[0]", "a", np.zeros((1, 2), np.int32), [0])
    stream = TaggedStream("tfds:x", ("O",), lambda extra: iter([row]))
    with pytest.raises(ValueError, match=r"tfds:x: the eval split has no examples: pick another eval split"):
        list(stream)


def test_frequent_tag_baseline():
    base = FrequentTag(3)
    base.add(["a", "b", "a", "c", "a"], [1, 2, 1, 2, 0])
    base.add(["b"], [1])  # b: one 2 and one 1, a tie goes to the first tag
    assert base.predict(["a", "b", "c", "unseen"]) == [1, 1, 2, 1]  # unseen: 1, the most frequent overall


def _conll_records(split):
    return {"train": [{"tokens": np.array([b"EU", b"rejects", b"German", b"call"], object),
                       "ner": np.array([3, 0, 7, 0]), "pos": np.zeros(4, int), "chunks": np.zeros(4, int)},
                      {"tokens": np.array([], object), "ner": np.array([], int),
                       "pos": np.zeros(0, int), "chunks": np.zeros(0, int)}],
            "dev": [{"tokens": np.array(["Peter", "Blackburn"], object), "ner": np.array([1, 2]),
                     "pos": np.zeros(2, int), "chunks": np.zeros(2, int)}]}[split]


def test_conll2003_through_tfds(mocked_tfds):
    """The real conll2003 builder's features and splits, over examples in its format."""
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=mocked_tfds,
                                as_data_source_fn=lambda self, split, **_: _conll_records(split)):
        stream = open_tagged("tfds:conll2003", tfds_data_dir=mocked_tfds)
        got = list(stream)
    assert stream.tag_names == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
    assert [(r[0], r[1], r[2]) for r in got] == [("train", "train[0]", "EU rejects German call"),
                                                 ("eval", "dev[0]", "Peter Blackburn")]  # eval: dev
    assert [stream.tag_names[t] for t in got[0][4]] == ["B-ORG", "O", "B-MISC", "O"]
    assert words_of(got[1][2], got[1][3]) == ["Peter", "Blackburn"]
    assert stream.stats["skipped"] == 1  # the empty sentence


def test_conll2003_features_that_disagree_in_length(mocked_tfds):
    """tfds's random mock gives each sequence its own length: tokens and tags disagree."""
    with pytest.raises(ValueError, match=r"conll2003/conll2003 split 'train' example 0: \d+ tokens but "
                                         r"\d+ tags: re-prepare it"):
        list(open_tagged("tfds:conll2003", tfds_data_dir=mocked_tfds))
    with pytest.raises(ValueError, match=r"tags_key='tokens': conll2003/conll2003 has no such sequence "
                                         r"of ClassLabel; name one of: pos, chunks, ner"):
        open_tagged("tfds:conll2003", tfds_data_dir=mocked_tfds, tags_key="tokens")
