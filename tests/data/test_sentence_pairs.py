"""Sentence pairs: segmentation against a plain-Python reference, BERT's instance rules on real
stdlib text (byte and sentencepiece), the [CLS] A [SEP] B [SEP] layout and stateless batches."""
import math
import tracemalloc

import numpy as np
import pytest

from llmjax.data import sentence_pairs
from llmjax.data.pipeline import tokenize_documents
from llmjax.data.sentence_pairs import SentencePairs, segment_stream
from llmjax.data.token_cache import TokenStream
from llmjax.data.tokenizers import ByteTokenizer
from tests.data.bert_corpus import stdlib_texts, tokenizers

HAND_MADE = ["Hello world. This is it! Is it?\nYes.\n\ndef f(x):\n    return x\n\n\n    y = 1\nend",
             "  \n\n",  # no text: no segments
             "\n\nA. B.\n\n\n",
             "x" * 25 + "\n" + "y" * 5 + "\n" + "z\n",
             "a\n \t\n b\n\n"]


def _texts(stream, seg, tok):
    return [tok.decode(stream[s:s + n]) for s, n in zip(seg.start, seg.length)]


@pytest.mark.parametrize("kind", ["byte", "sentencepiece"])
def test_segmentation_by_hand(kind):
    tok = tokenizers()[kind]
    stream = tokenize_documents(tok, HAND_MADE)
    seg = segment_stream(stream, tok, max_len=1000)
    assert _texts(stream, seg, tok) == [
        "Hello world.", " This is it!", " Is it?", "\nYes.\n\n",  # blank line glued before
        "def f(x):\n    return x\n\n\n", "    y = 1\nend",  # the indentation stays with y
        "\n\nA.", " B.\n\n\n",  # leading whitespace joins the first segment
        "x" * 25 + "\n" + "y" * 5 + "\nz\n",
        "a\n \t\n", " b\n\n"]
    assert seg.doc_count.tolist() == [6, 2, 1, 2]
    if kind == "byte":  # long segments: at line ends first, then hard cuts
        seg = segment_stream(stream, tok, max_len=10)
        assert _texts(stream, seg, tok) == [
            "Hello worl", "d.", " This is i", "t!", " Is it?", "\nYes.\n\n",
            "def f(x):\n", "    return", " x\n\n\n", "    y = 1\n", "end",
            "\n\nA.", " B.\n\n\n", "x" * 10, "x" * 10, "xxxxx\n", "yyyyy\n", "z\n",
            "a\n \t\n", " b\n\n"]
        assert seg.length.max() == 10


def _reference_segments(pieces, max_len):
    """(start, end) of one document's segments, one token at a time (the docstring's rules)."""
    n = len(pieces)
    text = [bool(p.strip()) for p in pieces]
    space = [p != "" and p.isspace() for p in pieces]
    cuts = {i for i in range(1, n) if pieces[i - 1].endswith((".", "!", "?"))
            and pieces[i][:1].isspace()}
    i = 0
    while i < n:
        if not space[i]:
            i += 1
            continue
        j = i
        while j < n and space[j]:
            j += 1
        with_newlines = [k for k in range(i, j) if "\n" in pieces[k]]
        if sum(pieces[k].count("\n") for k in with_newlines) >= 2:
            cuts.add(with_newlines[-1] + 1)
        i = j

    def keep(cuts):
        cuts = sorted(c for c in cuts if 0 < c < n)
        return [0] + [c for c, nxt in zip(cuts, cuts[1:] + [n]) if any(text[c:nxt]) and any(text[:c])]

    starts = keep(cuts)
    segs = list(zip(starts, starts[1:] + [n]))
    if any(e - s > max_len for s, e in segs):
        lines = {k + 1 for s, e in segs if e - s > max_len for k in range(s, e - 1)
                 if pieces[k].endswith("\n")}
        starts = keep(set(starts) | lines)
        segs = list(zip(starts, starts[1:] + [n]))
    out = []
    for s, e in segs:
        while e - s > max_len:
            out.append((s, s + max_len))
            s += max_len
        out.append((s, e))
    return out


@pytest.mark.parametrize("kind, max_len", [("byte", 40), ("sentencepiece", 16),
                                           ("sentencepiece", 62)])
def test_segmentation_matches_reference_on_stdlib(kind, max_len):
    tok = tokenizers()[kind]
    docs = list(stdlib_texts())[:12] if kind == "byte" else list(stdlib_texts())
    if kind == "byte":
        docs = [d[:15_000] for d in docs]
    stream = tokenize_documents(tok, docs + HAND_MADE)
    seg = segment_stream(stream, tok, max_len)
    pieces = tok.pieces()
    expected, offset = [], 0
    for ids in tok.encode_batch(docs + HAND_MADE):
        ps = [pieces[i] for i in ids]
        if any(p.strip() for p in ps):
            expected += [(offset + s, offset + e) for s, e in _reference_segments(ps, max_len)]
        offset += len(ids) + 1
    got = list(zip(seg.start.tolist(), (seg.start + seg.length).tolist()))
    assert got == expected
    assert seg.length.min() >= 1 and seg.length.max() <= max_len
    assert seg.doc_count.sum() == len(seg.start) and (seg.doc_first == np.r_[0, np.cumsum(
        seg.doc_count)[:-1]]).all()


@pytest.fixture(scope="module", params=["byte", "sentencepiece"])
def pairs(request):
    tok = tokenizers()[request.param]
    docs = list(stdlib_texts(40, 12_000 if request.param == "byte" else 30_000))
    stream = tokenize_documents(tok, docs)
    return tok, stream, SentencePairs(stream, tok, seq_len=64, batch_size=16, seed=3,
                                      shuffle=True, passes=4)


def test_instances_follow_bert(pairs):
    tok, stream, sp = pairs
    M = sp.max_num_tokens
    eos = np.flatnonzero(stream == tok.eos_id)
    a0, la, b0, lb = sp.a_start, sp.a_len.astype(np.int64), sp.b_start, sp.b_len.astype(np.int64)
    doc_a, doc_b = np.searchsorted(eos, a0), np.searchsorted(eos, b0)
    assert (la >= 1).all() and (lb >= 1).all() and (la + lb <= M).all()
    assert (doc_a == np.searchsorted(eos, a0 + la - 1)).all()  # A and B never cross an EOS
    assert (doc_b == np.searchsorted(eos, b0 + lb - 1)).all()
    nxt, rnd = sp.labels == 0, sp.labels == 1
    assert set(np.unique(sp.labels)) == {0, 1}
    assert (doc_a[nxt] == doc_b[nxt]).all() and (b0[nxt] >= a0[nxt] + la[nxt]).all()
    assert (doc_a[rnd] != doc_b[rnd]).all()
    whole = la + lb < M  # not truncated: B starts right after A, all on segment boundaries
    assert whole.mean() > 0.05
    assert (b0[nxt & whole] == a0[nxt & whole] + la[nxt & whole]).all()
    seg = segment_stream(stream, tok, sp.max_num_tokens // 2)
    seg_starts = set(seg.start.tolist())
    seg_ends = set((seg.start + seg.length).tolist())
    for x in (a0[whole], b0[whole]):
        assert set(x.tolist()) <= seg_starts
    assert set((a0 + la)[whole].tolist()) <= seg_starts | seg_ends
    assert set((b0 + lb)[whole].tolist()) <= seg_ends
    # the coin: fair where the chunk had two or more segments; one-segment chunks go random
    fair = sp.labels[~sp.forced_random]
    n = len(fair)
    assert abs(fair.sum() - n / 2) < 4.5 * math.sqrt(n / 4)
    assert (sp.labels[sp.forced_random] == 1).all() and sp.forced_random.mean() < 0.1
    assert sp.num_examples == len(sp.labels) > 1000
    # truncation ate from the front (not only the back) of some A's and B's
    assert not set(a0[~whole].tolist()) <= seg_starts


def test_short_targets(pairs):
    tok, stream, sp = pairs
    none = SentencePairs(stream, tok, 64, 16, 3, shuffle=True, passes=2, short_seq_prob=0.0)
    many = SentencePairs(stream, tok, 64, 16, 3, shuffle=True, passes=2, short_seq_prob=0.5)
    M = sp.max_num_tokens
    share = [np.mean(p.a_len + p.b_len < M) for p in (none, many)]
    assert share[0] < 0.02 and share[1] > 0.25  # half the targets are uniform in [2, M]


def test_truncation_counts_match_berts_loop():
    for M in (2, 5, 20, 37):
        la, lb = np.meshgrid(np.arange(1, 60), np.arange(1, 60))
        la, lb = la.ravel(), lb.ravel()
        ca, cb = sentence_pairs.truncation_counts(la, lb, M)
        for a, b, x, y in zip(la.tolist(), lb.tolist(), ca.tolist(), cb.tolist()):
            ra = rb = 0
            while a - ra + b - rb > M:
                if a - ra > b - rb:
                    ra += 1
                else:
                    rb += 1
            assert (x, y) == (ra, rb), (a, b, M)


def test_passes_are_deterministic(pairs):
    tok, stream, sp = pairs
    seg = segment_stream(stream, tok, sp.max_num_tokens // 2)
    p1 = sentence_pairs.build_pass(seg, sp.max_num_tokens, 0.1, np.random.default_rng([3, 1, 1]))
    p0 = sentence_pairs.build_pass(seg, sp.max_num_tokens, 0.1,
                                   np.random.default_rng([3, 0, 1]))
    n0 = len(p0["label"])
    np.testing.assert_array_equal(sp.a_start[n0:n0 + len(p1["label"])], p1["a_start"])
    np.testing.assert_array_equal(sp.labels[n0:n0 + len(p1["label"])], p1["label"])
    again = SentencePairs(stream, tok, 64, 16, 3, shuffle=True, passes=4)
    for name in ("a_start", "a_len", "b_start", "b_len", "labels"):
        np.testing.assert_array_equal(getattr(again, name), getattr(sp, name))
    other = SentencePairs(stream, tok, 64, 16, 4, shuffle=True, passes=1)
    assert not np.array_equal(other.a_start, sp.a_start[:len(other.a_start)])


def test_batch_layout(pairs):
    tok, stream, sp = pairs
    x = sp.batch(5)
    assert {k: (v.shape, v.dtype) for k, v in x.items()} == {
        "tokens": ((16, 64), np.int32), "token_types": ((16, 64), np.int32),
        "attention_mask": ((16, 64), np.int32), "nsp_labels": ((16,), np.int32),
        "weights": ((16,), np.float32)}
    for r, i in enumerate(sp.indices(5)):
        a = stream[sp.a_start[i]:sp.a_start[i] + sp.a_len[i]].tolist()
        b = stream[sp.b_start[i]:sp.b_start[i] + sp.b_len[i]].tolist()
        row = [tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id]
        pad = 64 - len(row)
        assert x["tokens"][r].tolist() == row + [tok.pad_id] * pad
        assert x["token_types"][r].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * pad
        assert x["attention_mask"][r].tolist() == [1] * len(row) + [0] * pad
        assert x["nsp_labels"][r] == sp.labels[i] and x["weights"][r] == 1.0


def test_shuffled_order_is_stateless_and_rows_slice(pairs):
    sp = pairs[2]
    n, bs = sp.num_examples, sp.batch_size
    steps = -(-2 * n // bs) + 3  # into the third epoch
    seen = np.concatenate([sp.indices(s) for s in range(steps)])
    perms = [np.random.default_rng([3, e]).permutation(n) for e in range(3)]
    np.testing.assert_array_equal(seen, np.concatenate(perms)[:len(seen)])
    full = sp.batch(steps - 1)  # straddles the epoch end
    for rows in (slice(0, 4), slice(4, 12), slice(12, 16)):
        part = sp.batch(steps - 1, rows)
        for k in full:
            np.testing.assert_array_equal(part[k], full[k][rows])


def test_eval_is_in_order_and_pads_past_the_end():
    tok = ByteTokenizer()
    stream = tokenize_documents(tok, list(stdlib_texts(6, 3000)))
    sp = SentencePairs(stream, tok, seq_len=48, batch_size=16, seed=0, shuffle=False, passes=1)
    last = sp.num_batches - 1
    real = sp.num_examples - last * 16
    assert 0 < real < 16, "pick sizes so the last batch is part padding"
    x = sp.batch(last)
    np.testing.assert_array_equal(sp.indices(0), np.arange(16))
    assert x["weights"].tolist() == [1.0] * real + [0.0] * (16 - real)
    assert (x["tokens"][real:] == tok.pad_id).all() and (x["attention_mask"][real:] == 0).all()
    assert (x["token_types"][real:] == 0).all() and (x["nsp_labels"][real:] == 0).all()
    np.testing.assert_array_equal(x["tokens"][:real], sp.batch(last, slice(0, real))["tokens"])


def test_errors_are_one_line(tmp_path):
    tok = ByteTokenizer()
    one_doc = tokenize_documents(tok, ["Just one document. With two sentences.", "  \n"])
    for cache_dir in (None, str(tmp_path)):
        with pytest.raises(ValueError, match="1 document.* use more data, at least two") as e:
            SentencePairs(one_doc, tok, 32, 4, 0, shuffle=True, cache_dir=cache_dir)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="seq_len=4 .* use seq_len >= 5"):
        SentencePairs(one_doc, tok, 4, 4, 0, shuffle=True)
    two = tokenize_documents(tok, ["a. b.", "c"])
    assert SentencePairs(two, tok, 5, 4, 0, shuffle=True).num_examples > 0


# ---------------------------------------------------------------- a sharded stream, in blocks


def _sharded(tmp_path, tok, docs, per_shard):
    """The documents' stream as a TokenStream of shards of per_shard documents each."""
    paths, lengths = [], []
    for i in range(0, len(docs), per_shard):
        ids = tokenize_documents(tok, docs[i:i + per_shard])
        paths.append(str(tmp_path / f"train-{i:06d}.bin"))
        ids.tofile(paths[-1])
        lengths.append(len(ids))
    return TokenStream(paths, lengths, ids.dtype)


def test_stream_blocks_cut_at_shards_and_fold_a_short_tail(tmp_path):
    lengths = [5, 3, 4, 6, 2, 1]
    paths = []
    for i, n in enumerate(lengths):
        paths.append(str(tmp_path / f"{i}.bin"))
        np.zeros(n, np.uint16).tofile(paths[-1])
    stream = TokenStream(paths, lengths, np.uint16)
    assert sentence_pairs.stream_blocks(stream, 8) == [(0, 8), (8, 21)]  # tail 2+1 < 4 folds in
    assert sentence_pairs.stream_blocks(stream, 6) == [(0, 8), (8, 18), (18, 21)]  # 3 >= 6 // 2
    assert sentence_pairs.stream_blocks(stream, 100) == [(0, 21)]
    assert sentence_pairs.stream_blocks(np.zeros(21, np.uint16), 6) == [(0, 21)]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tok = ByteTokenizer()
    stream = _sharded(tmp_path_factory.mktemp("shards"), tok, list(stdlib_texts(24, 3_000)), 3)
    return tok, stream


def test_a_block_pairs_only_its_own_documents_at_stream_positions(sharded):
    tok, stream = sharded
    sp = SentencePairs(stream, tok, 64, 16, 3, shuffle=True, passes=2, block_tokens=15_000)
    blocks = sentence_pairs.stream_blocks(stream, 15_000)
    assert len(blocks) >= 3 and sp.stats["blocks"] == len(blocks)
    ends = np.array([e for _, e in blocks])
    block_a = np.searchsorted(ends, sp.a_start, side="right")
    assert (block_a == np.searchsorted(ends, sp.b_start + sp.b_len - 1, side="right")).all()
    assert len(np.unique(block_a)) == len(blocks)
    whole = np.asarray(stream)  # the batch reads the stream where the instances say
    b = sp.batch(0)
    for row in range(4):
        i = sp.indices(0)[row]
        a = whole[sp.a_start[i]:sp.a_start[i] + sp.a_len[i]]
        np.testing.assert_array_equal(b["tokens"][row, 1:1 + len(a)], a)
    first = SentencePairs(stream[0:blocks[0][1]], tok, 64, 16, 3, shuffle=True, passes=1)
    np.testing.assert_array_equal(sp.instances[:first.num_examples], first.instances)


def test_the_cache_file_equals_the_build_in_memory_and_is_reused(sharded, tmp_path, monkeypatch):
    tok, stream = sharded
    args = dict(shuffle=True, passes=2, block_tokens=15_000, source_id="corpus:train")
    memory = SentencePairs(stream, tok, 64, 16, 3, **args)
    logged = []
    cached = SentencePairs(stream, tok, 64, 16, 3, cache_dir=str(tmp_path), workers=2,
                           log=logged.append, **args)
    np.testing.assert_array_equal(np.asarray(cached.instances), memory.instances)
    assert isinstance(cached.instances, np.memmap) and cached.stats == {**memory.stats,
                                                                        "seconds": cached.stats["seconds"]}
    assert [f.name for f in tmp_path.iterdir()] and all(f.name.startswith("pairs-")
                                                        for f in tmp_path.iterdir())
    assert len(list(tmp_path.iterdir())) == 2 and "2 worker(s)" in logged[0]
    assert memory.stats["random_next"] == pytest.approx(memory.labels.mean())
    assert memory.stats["mean_tokens"] == pytest.approx(3 + np.mean(memory.a_len + memory.b_len))
    monkeypatch.setattr(sentence_pairs, "block_instances", None)  # reused: nothing is built
    again = SentencePairs(stream, tok, 64, 16, 3, cache_dir=str(tmp_path), **args)
    np.testing.assert_array_equal(again.batch(5)["tokens"], memory.batch(5)["tokens"])
    monkeypatch.undo()
    SentencePairs(stream, tok, 64, 16, 3, cache_dir=str(tmp_path), **{**args, "passes": 1})
    assert len(list(tmp_path.iterdir())) == 4  # other settings: another file


def test_a_killed_build_resumes_from_its_finished_blocks(sharded, tmp_path, monkeypatch):
    tok, stream = sharded
    args = dict(shuffle=True, passes=2, block_tokens=15_000, cache_dir=str(tmp_path))
    built, real = [], sentence_pairs.block_instances

    def dies_on_block_2(*a, block, **k):
        if block == 2 and not built.count("resumed"):
            raise KeyboardInterrupt  # stands for a kill: nothing after it runs
        built.append(block)
        return real(*a, block=block, **k)

    monkeypatch.setattr(sentence_pairs, "block_instances", dies_on_block_2)
    with pytest.raises(KeyboardInterrupt):
        SentencePairs(stream, tok, 64, 16, 3, **args)
    assert built == [0, 1] and not any(f.suffix == ".npy" and ".b" not in f.name
                                       for f in tmp_path.iterdir())  # no half-served file
    built.append("resumed")
    resumed = SentencePairs(stream, tok, 64, 16, 3, **args)
    assert 0 not in built[3:] and 1 not in built[3:] and 2 in built[3:]
    memory = SentencePairs(stream, tok, 64, 16, 3, shuffle=True, passes=2, block_tokens=15_000)
    np.testing.assert_array_equal(np.asarray(resumed.instances), memory.instances)
    assert sorted(f.suffix for f in tmp_path.iterdir()) == [".json", ".npy"]  # parts removed


def test_building_memory_is_per_block_not_per_corpus(tmp_path):
    tok = ByteTokenizer()
    docs = list(stdlib_texts(8, 2_000))
    peaks = []
    for copies in (4, 16):
        stream = _sharded(tmp_path / f"c{copies}", tok, docs * copies, 4) if (
            tmp_path / f"c{copies}").mkdir() is None else None
        tracemalloc.start()
        SentencePairs(stream, tok, 64, 16, 0, shuffle=True, passes=2, block_tokens=8_000,
                      cache_dir=str(tmp_path / f"p{copies}"))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks  # 4x the corpus
