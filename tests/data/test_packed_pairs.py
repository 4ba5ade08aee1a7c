"""PackedPairs: whole examples per row, segment layout, decoder shift, weights, one pass per
epoch, batches as pure functions of (seed, step), eval padding; and example_ids."""
import collections
import hashlib

import numpy as np
import pytest

from llmjax.data.packed_pairs import PackedPairs, example_ids

EOS, PAD, START = 1, 0, 2
S, T, B = 96, 48, 32


def _data(n=3000, seed=0):
    """Real-ish lengths: some sources and targets longer than S, T (truncated), some empty."""
    rng = np.random.default_rng(seed)
    sources = [rng.integers(3, 8000, rng.integers(0, 120)) for _ in range(n)]
    targets = [rng.integers(3, 8000, rng.integers(0, 60)) for _ in range(n)]
    return sources, targets


def _packed(sources, targets, shuffle=True, seed=0, batch_size=B):
    return PackedPairs(sources, targets, source_len=S, target_len=T, batch_size=batch_size,
                       seed=seed, shuffle=shuffle, eos_id=EOS, pad_id=PAD, start_id=START)


def _examples_of_row(batch, r):
    """[(source ids, target ids)] of row r, one per segment, checking each segment's layout."""
    out = []
    assert batch["source_segment_ids"][r].max() == batch["target_segment_ids"][r].max()
    for seg in range(1, batch["source_segment_ids"][r].max() + 1):
        s_at = batch["source_segment_ids"][r] == seg
        t_at = batch["target_segment_ids"][r] == seg
        assert s_at.any() and t_at.any()
        for at in (s_at, t_at):  # contiguous, positions restart at 0
            idx = np.flatnonzero(at)
            assert (np.diff(idx) == 1).all()
        assert (batch["source_positions"][r][s_at] == np.arange(s_at.sum())).all()
        assert (batch["target_positions"][r][t_at] == np.arange(t_at.sum())).all()
        tgt = batch["targets"][r][t_at]
        dec = batch["decoder_inputs"][r][t_at]
        assert dec[0] == START and (dec[1:] == tgt[:-1]).all()
        out.append((tuple(batch["source"][r][s_at]), tuple(tgt)))
    return out


def _check_padding(batch):
    for side, key in (("source", "source_segment_ids"), ("targets", "target_segment_ids")):
        pad = batch[key] == 0
        assert (batch[side][pad] == PAD).all()
        segs = batch[key]  # segments are 1, 2, 3... from the row start, padding only at the end
        assert (np.diff(segs, axis=1)[~pad[:, 1:]] >= 0).all()
    pad_t = batch["target_segment_ids"] == 0
    assert (batch["decoder_inputs"][pad_t] == PAD).all()
    assert (batch["source_positions"][batch["source_segment_ids"] == 0] == 0).all()
    assert (batch["target_positions"][pad_t] == 0).all()
    np.testing.assert_array_equal(batch["weights"], (~pad_t).astype(np.float32))


def _expected(sources, targets):
    return collections.Counter((tuple(example_ids(s, EOS, S)), tuple(example_ids(t, EOS, T)))
                               for s, t in zip(sources, targets))


def test_one_epoch_holds_every_example_once_whole_and_well_laid_out():
    sources, targets = _data()
    packed = _packed(sources, targets)
    assert packed.num_examples == 3000 and packed.num_rows < 3000
    seen, rows = collections.Counter(), 0
    for step in range(packed.num_batches):
        left = packed.num_rows - step * B  # the last batch straddles into epoch 1: cut it
        batch = packed.batch(step, slice(0, min(B, left)))
        assert batch["source"].shape == (min(B, left), S)
        assert batch["targets"].shape == (min(B, left), T)
        assert {k: v.dtype for k, v in batch.items()} == {
            **{k: np.int32 for k in batch if k != "weights"}, "weights": np.float32}
        _check_padding(batch)
        for r in range(len(batch["source"])):
            row = _examples_of_row(batch, r)
            assert row
            seen.update(row)
            rows += 1
    assert rows == packed.num_rows
    assert seen == _expected(sources, targets)


def test_packing_is_greedy_on_both_sides_and_in_order_without_shuffle():
    sources, targets = _data(800)
    packed = _packed(sources, targets, shuffle=False)
    order = []
    prev_room = None
    for step in range(packed.num_batches):
        batch = packed.batch(step)
        for r in range(B):
            row = _examples_of_row(batch, r)
            if not row:  # eval padding at the end
                continue
            if prev_room is not None:  # the row's first example did not fit in the row before
                s_len, t_len = len(row[0][0]), len(row[0][1])
                assert s_len > prev_room[0] or t_len > prev_room[1]
            prev_room = (S - (batch["source_segment_ids"][r] > 0).sum(),
                         T - (batch["target_segment_ids"][r] > 0).sum())
            order.extend(row)
    assert order == [(tuple(example_ids(s, EOS, S)), tuple(example_ids(t, EOS, T)))
                     for s, t in zip(sources, targets)]


def test_eval_padding_rows_have_zero_weight():
    sources, targets = _data(500)
    packed = _packed(sources, targets, shuffle=False)
    assert packed.num_rows % B  # the last batch is partial
    last = packed.batch(packed.num_batches - 1)
    real = packed.num_rows - (packed.num_batches - 1) * B
    assert last["weights"][:real].sum(axis=1).min() > 0
    assert (last["weights"][real:] == 0).all()
    for key in ("source_segment_ids", "target_segment_ids"):
        assert (last[key][real:] == 0).all()
    assert (last["source"][real:] == PAD).all() and (last["decoder_inputs"][real:] == PAD).all()
    _check_padding(last)


def test_batches_are_pure_functions_of_seed_and_step():
    sources, targets = _data(1500)
    a, b = _packed(sources, targets, seed=3), _packed(sources, targets, seed=3)
    steps = [0, 7, 2, 30, 7, 1]  # past an epoch end too
    first = {s: a.batch(s) for s in steps}
    for s in reversed(steps):
        for key, value in b.batch(s).items():
            np.testing.assert_array_equal(value, first[s][key], err_msg=f"{key} at step {s}")
    halves = [b.batch(7, slice(0, 11)), b.batch(7, slice(11, 20)), b.batch(7, slice(20, B))]
    for key in first[7]:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), first[7][key])
    other = _packed(sources, targets, seed=4)
    assert not np.array_equal(other.batch(0)["source"], first[0]["source"])
    n = a.num_rows  # each epoch visits every row once, in a new order
    walk = np.concatenate([a.rows(s) for s in range(2 * a.num_batches + 1)])
    assert sorted(walk[:n]) == sorted(walk[n:2 * n]) == list(range(n))
    assert not np.array_equal(walk[:n], walk[n:2 * n])


def test_truncation_counted_and_stats():
    sources, targets = _data()
    packed = _packed(sources, targets)
    s = packed.stats
    assert s["source_truncated"] == sum(len(x) + 1 > S for x in sources) > 0
    assert s["target_truncated"] == sum(len(x) + 1 > T for x in targets) > 0
    assert s["examples"] == 3000 and s["rows"] == packed.num_rows
    assert s["examples_per_row"] == round(3000 / packed.num_rows, 3) > 1
    tokens = sum(len(example_ids(t, EOS, T)) for t in targets)
    assert s["target_fill"] == round(tokens / (packed.num_rows * T), 4)


def test_example_ids():
    np.testing.assert_array_equal(example_ids(np.array([5, 6, 7]), EOS, 10), [5, 6, 7, EOS])
    np.testing.assert_array_equal(example_ids(np.array([5, 6, 7]), EOS, 2), [5, 6])
    np.testing.assert_array_equal(example_ids(np.array([], np.int32), EOS, 2), [EOS])


@pytest.mark.parametrize("kwargs, match", [
    ({"targets": []}, "one target per source"),
    ({"sources": [], "targets": []}, "split is empty"),
    ({"source_len": 0}, "must be positive"),
])
def test_bad_arguments(kwargs, match):
    sources, targets = _data(10)
    args = {"sources": sources, "targets": targets, "source_len": S, "target_len": T,
            "batch_size": B, "seed": 0, "shuffle": True, "eos_id": EOS, "pad_id": PAD,
            "start_id": START, **kwargs}
    with pytest.raises(ValueError, match=match):
        PackedPairs(**args)


def _digest(packed, steps) -> str:
    h = hashlib.sha1()
    for step in steps:
        batch = packed.batch(step)
        for k in sorted(batch):
            h.update(k.encode())
            h.update(np.ascontiguousarray(batch[k]).tobytes())
    h.update(repr(sorted(packed.stats.items())).encode())
    return h.hexdigest()


def test_batches_are_those_of_the_materialised_packing():
    """The digest of these batches as the packing that copied every example's tokens into
    packing order (before examples were gathered per batch) built them."""
    rng = np.random.default_rng(7)
    sources = [rng.integers(3, 8000, rng.integers(0, 120)) for _ in range(500)]
    targets = [rng.integers(3, 8000, rng.integers(0, 60)) for _ in range(500)]
    h = hashlib.sha1()
    for shuffle in (True, False):
        p = PackedPairs(sources, targets, source_len=96, target_len=48, batch_size=8, seed=3,
                        shuffle=shuffle, eos_id=1, pad_id=0, start_id=2)
        h.update(_digest(p, (0, 1, 5, p.num_batches - 1, p.num_batches + 2)).encode())
    assert h.hexdigest() == "10a1161c7b4529e83c3dfde001c207f4b8c879d1"


def test_a_memory_mapped_cache_packs_as_lists_do(tmp_path):
    """Examples gathered from example_cache's files (uint16 memory maps) give the batches of
    the same examples held as lists."""
    from llmjax.data import example_cache
    from llmjax.data.tokenizers import ByteTokenizer

    rng = np.random.default_rng(1)
    words = ["".join(rng.choice(list("abcdefgh"), rng.integers(0, 150))) for _ in range(400)]
    records = [("train", (w, w[::-1][:50]), None) for w in words] + [("eval", ("x", "y"), None)]
    tok = ByteTokenizer()
    cache = example_cache.build(str(tmp_path), {}, tok, records, fields=("source", "target"),
                                labelled=False, meta=dict, chunk=64)
    args = dict(source_len=S, target_len=T, batch_size=B, seed=5, shuffle=True, eos_id=tok.eos_id,
                pad_id=tok.pad_id, start_id=tok.eos_id)
    mapped = PackedPairs(cache.field("train", "source"), cache.field("train", "target"), **args)
    assert isinstance(mapped._src.seqs.flat, np.memmap)
    lists = PackedPairs(tok.encode_batch(words), tok.encode_batch([w[::-1][:50] for w in words]), **args)
    steps = range(mapped.num_batches + 1)
    assert _digest(mapped, steps) == _digest(lists, steps)
