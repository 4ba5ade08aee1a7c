"""The tokenized example cache: a round trip, reuse under the same key and a rebuild under
another, a killed build (no manifest) and damaged files, and memory that does not grow with the
dataset's text while a pairs: corpus is tokenized into it."""
import os
import tracemalloc

import numpy as np
import pytest

from llmjax.data import example_cache
from llmjax.data.example_cache import CacheError, ExampleCache, Ragged
from llmjax.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
RECORDS = [("train", ("héllo", "a"), 1), ("train", ("", "bb"), 0), ("train", ("xyz", ""), 2),
           ("eval", ("q", "rr"), 1)]


def _build(directory, records=RECORDS, **kw):
    args = dict(fields=("a", "b"), labelled=True, meta=lambda: {"stats": {"n": len(records)}},
                keep_text={"train": 2, "eval": 5}, chunk=2)
    return example_cache.build(str(directory), {"k": 1}, TOK, iter(records), **{**args, **kw})


def test_round_trip(tmp_path):
    cache = _build(tmp_path)
    again = ExampleCache(str(tmp_path), example_cache.read_manifest(str(tmp_path)), verify=True)
    for c in (cache, again):
        assert c.num_examples("train") == 3 and c.num_examples("eval") == 1
        a = c.field("train", "a")
        assert len(a) == 3 and a.flat.dtype == np.uint16
        assert [a[i].tolist() for i in range(3)] == [TOK.encode(r[1][0]) for r in RECORDS[:3]]
        assert c.field("eval", "b")[0].tolist() == TOK.encode("rr")
        np.testing.assert_array_equal(a.lengths(), [6, 0, 3])  # é is two bytes
        np.testing.assert_array_equal(c.labels("train"), [1, 0, 2])
        assert c.labels("eval").dtype == np.int32
        assert c.texts("train", "a", 10) == ["héllo", ""]  # the first keep_text examples only
        assert c.texts("eval", "b", 10) == ["rr"]
        assert c.meta == {"stats": {"n": 4}}
    r = Ragged.from_arrays([[1, 2], [], [3]])
    assert len(r) == 3 and r[1].tolist() == [] and r.lengths().tolist() == [2, 0, 1]


def _tagging_columns(tok, records):
    """A token-labelling task's columns: each text's bytes, and per byte 1 for a letter else -1."""
    ids = [np.asarray(tok.encode(r[1][0]), np.int32) for r in records]
    tags = [np.where(np.isin(i, list(b"abcdefghijklmnopqrstuvwxyz")), 1, -1).astype(np.int8) for i in ids]
    return {"ids": ids, "tags": tags}


def test_a_tasks_own_columns_keep_their_dtypes_texts_and_labels(tmp_path):
    """encode= writes the task's columns (each with its arrays' dtype, memory-mapped back), the
    records' texts under text0/text1, the labels; an empty split gets empty columns."""
    records = RECORDS[:3]
    for c in (_build(tmp_path, records, fields=("ids", "tags"), encode=_tagging_columns),
              ExampleCache(str(tmp_path), example_cache.read_manifest(str(tmp_path)), verify=True)):
        ids, tags = c.field("train", "ids"), c.field("train", "tags")
        assert ids.flat.dtype == np.int32 and tags.flat.dtype == np.int8
        assert [ids[i].tolist() for i in range(3)] == [TOK.encode(r[1][0]) for r in records]
        assert tags[2].tolist() == [1, 1, 1] and tags[0].tolist()[:2] == [1, -1]  # é's bytes are not letters
        assert c.texts("train", "text0", 9) == ["héllo", ""] and c.texts("train", "text1", 9) == ["a", "bb"]
        np.testing.assert_array_equal(c.labels("train"), [1, 0, 2])
        assert len(c.field("eval", "ids")) == 0 and c.field("eval", "tags").flat.dtype == np.int8
    with pytest.raises(ValueError, match=r"encode returned the columns \['ids', 'tags'\], fields are \['ids'\]"):
        _build(tmp_path, records, fields=("ids",), encode=_tagging_columns)


def test_a_split_read_twice_or_unknown_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split 'train' read again"):
        _build(tmp_path, [*RECORDS, ("train", ("z", "z"), 0)])
    with pytest.raises(ValueError, match="split 'test'"):
        _build(tmp_path, [("test", ("z", "z"), 0)])


def _load(directory, key, log, records=RECORDS):
    calls = []

    def read():
        calls.append(1)
        return iter(records)
    cache = example_cache.load_or_build(str(directory), key, TOK, read, log.append, fields=("a", "b"),
                                        labelled=True, meta=dict)
    return cache, len(calls)


def test_reused_under_the_same_key_rebuilt_under_another(tmp_path):
    log = []
    first, reads = _load(tmp_path, {"max_examples": 0}, log)
    assert reads == 1 and first.manifest["key"]["tokenizer"] == TOK.fingerprint()
    _, reads = _load(tmp_path, {"max_examples": 0}, log)
    assert reads == 0 and "reusing the tokenized examples" in log[-1]
    changed, reads = _load(tmp_path, {"max_examples": 2}, log, RECORDS[1:])
    assert reads == 1 and "max_examples: 0 -> 2" in log[-1]
    assert changed.num_examples("train") == 2


def test_a_killed_build_is_built_again(tmp_path):
    def dies():
        yield from RECORDS[:2]
        raise KeyboardInterrupt  # killed while the files are written
    log = []
    with pytest.raises(KeyboardInterrupt):
        example_cache.build(str(tmp_path), {}, TOK, dies(), fields=("a", "b"), labelled=True, meta=dict,
                            chunk=1)
    assert not os.path.exists(tmp_path / example_cache.MANIFEST) and os.listdir(tmp_path)
    cache, reads = _load(tmp_path, {}, log)
    assert reads == 1 and cache.num_examples("train") == 3
    os.remove(tmp_path / example_cache.MANIFEST)  # a manifest lost: never trusted without one
    _, reads = _load(tmp_path, {}, log)
    assert reads == 1


@pytest.mark.parametrize("damage, says", [("truncate", "holds 3 bytes, the manifest says 18"),
                                          ("flip", "fails its checksum"), ("remove", "is missing")])
def test_a_damaged_file_is_one_line_and_built_again(tmp_path, damage, says):
    _load(tmp_path, {}, [])
    path = tmp_path / "train.a.bin"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:3])
    elif damage == "flip":
        path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    else:
        path.unlink()
    with pytest.raises(CacheError) as e:
        ExampleCache(str(tmp_path), example_cache.read_manifest(str(tmp_path)))
    assert says in str(e.value) and str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    log = []
    cache, reads = _load(tmp_path, {}, log)
    assert reads == 1 and says in log[0] and "building them again" in log[0]
    assert cache.field("train", "a")[0].tolist() == TOK.encode("héllo")


def test_tokenizer_sample_is_everything_in_order_when_it_fits_else_a_bounded_random_sample():
    texts = [f"text {i} " * (i % 7 + 1) for i in range(300)]
    assert example_cache.tokenizer_sample(enumerate(texts), 10 ** 6) == texts
    small = example_cache.tokenizer_sample(enumerate(texts), 2000)
    assert 2000 <= sum(map(len, small)) < 2000 + max(map(len, texts))
    assert small != texts[:len(small)]  # not a prefix
    positions = [texts.index(t) for t in small]
    assert positions == sorted(positions)  # in the texts' order


# ---------------------------------------------------------------- memory


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write_pairs(directory, n: int, chars: int = 1000) -> str:
    """n distinct pairs of about 2 x chars characters in 4 files."""
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta"])
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(4):
        with open(directory / f"{f}.tsv", "w", encoding="utf-8") as out:
            for i in range(f * n // 4, (f + 1) * n // 4):
                w = " ".join(rng.choice(words, chars // 6))
                out.write(f"{i} {w}\t{w} {i}\n")
    return f"pairs:{directory}/*.tsv"


def _cache_pairs(spec, directory):
    from llmjax.data.pairs import open_pairs
    stream = open_pairs(spec, val_fraction=0.1, log=lambda _: None)
    example_cache.build(str(directory), {}, TOK, ((s, p, None) for s, *p in stream),
                        fields=("source", "target"), labelled=False, meta=lambda: stream.stats,
                        chunk=256)


def test_building_from_pairs_holds_hashes_not_texts(tmp_path):
    """From N to 4N pairs of 2,000 characters, the peak of Python's allocations grows by the
    dedup hash and the offsets of each pair (~100 bytes), never by its text (held whole, the
    texts alone would add 2,000+ bytes a pair)."""
    n = 1000
    peaks = [_peak_bytes(lambda k=k: _cache_pairs(_write_pairs(tmp_path / f"d{k}", k * n),
                                                     tmp_path / f"c{k}"))
             for k in (1, 4)]
    per_pair = (peaks[1] - peaks[0]) / (3 * n)
    assert per_pair < 400, (peaks, per_pair)
