"""PackedCompletions: each segment is prompt (source cut + [SEP]) then completion (target + EOS
cut), read shifted by one; the loss mask is exactly on the predictions of target + EOS; positions
restart and segment ids count per row; every example once per epoch; batches pure in (seed,
step); prompt_ids is the segment's head; sources joined to the memory pack too."""
import numpy as np
import pytest

from llmjax.data.example_cache import Ragged
from llmjax.data.memory_input import JoinedSources
from llmjax.data.packed_completions import PackedCompletions, prompt_ids

PAD, EOS, SEP = 0, 1, 2
L, T, B = 40, 10, 8


def _data(n=300, seed=0):
    """Lengths on both sides of the cuts (sources past L - T - 1, targets past T), some empty."""
    rng = np.random.default_rng(seed)
    sources = [rng.integers(3, 500, rng.integers(0, 45)) for _ in range(n)]
    targets = [rng.integers(3, 500, rng.integers(0, 14)) for _ in range(n)]
    return sources, targets


def _packed(sources, targets, shuffle=True, seed=0, batch_size=B):
    return PackedCompletions(sources, targets, seq_len=L, target_len=T, batch_size=batch_size, seed=seed,
                             shuffle=shuffle, sep_id=SEP, eos_id=EOS, pad_id=PAD)


def _example(source, target):
    """The whole sequence of an example, by hand: source cut to L - T - 1, [SEP], target + EOS cut to T."""
    return list(source[:L - T - 1]) + [SEP] + (list(target) + [EOS])[:T]


def _segments(batch, r):
    """[(inputs, targets, weights)] of row r's segments, checking positions and contiguity."""
    seg_L = batch["segment_ids"][r]
    out = []
    for seg in range(1, seg_L.max() + 1):
        at = np.flatnonzero(seg_L == seg)
        assert len(at) and (np.diff(at) == 1).all()
        assert (batch["positions"][r][at] == np.arange(len(at))).all()
        out.append(tuple(batch[k][r][at].tolist() for k in ("inputs", "targets", "weights")))
    pad = seg_L == 0
    assert (batch["inputs"][r][pad] == PAD).all() and (batch["targets"][r][pad] == PAD).all()
    assert (batch["weights"][r][pad] == 0).all() and (batch["positions"][r][pad] == 0).all()
    assert not pad.any() or pad[np.argmax(pad):].all()  # padding only at the end
    return out


def test_rows_read_each_example_shifted_with_the_loss_on_target_and_eos_only():
    sources, targets = _data()
    p = _packed(sources, targets, shuffle=False, batch_size=4)
    wanted = {i: _example(s, t) for i, (s, t) in enumerate(zip(sources, targets))}
    seen = []
    for index in range(p.num_batches):
        batch = p.batch(index)
        assert set(batch) == {"inputs", "targets", "weights", "positions", "segment_ids"}
        for r in range(batch["inputs"].shape[0]):
            for inputs, nexts, weights in _segments(batch, r):
                i = len(seen)
                seq = wanted[i]
                assert inputs == seq[:-1] and nexts == seq[1:], i
                prompt = len(prompt_ids(sources[i], SEP, L - T))
                # weight 1 exactly where the next token is the completion's (target + EOS, cut)
                assert weights == [0.0] * (prompt - 1) + [1.0] * (len(seq) - prompt), i
                assert sum(weights) == min(len(targets[i]) + 1, T)
                seen.append(i)
    assert seen == list(range(len(sources)))  # in order, each once
    assert p.stats["source_truncated"] == sum(len(s) > L - T - 1 for s in sources) > 0
    assert p.stats["target_truncated"] == sum(len(t) + 1 > T for t in targets) > 0
    assert p.stats["examples_per_row"] > 1.1  # packed


def test_the_cuts_keep_the_sources_head_and_sep_always():
    p = _packed([np.arange(100, 160)], [np.arange(200, 230)], shuffle=False, batch_size=1)
    batch = p.batch(0)
    seg = batch["segment_ids"][0] > 0
    sequence = batch["inputs"][0][seg].tolist() + [batch["targets"][0][seg][-1]]
    assert sequence == list(range(100, 129)) + [SEP] + list(range(200, 210))  # no EOS: target cut
    assert len(sequence) == L
    assert prompt_ids(np.arange(100, 160), SEP, L - T).tolist() == list(range(100, 129)) + [SEP]
    assert prompt_ids([], SEP, L - T).tolist() == [SEP]


def test_prompt_ids_is_the_segment_up_to_sep():
    """What decoding reads (prompt_ids) is what training read before the first weighted target."""
    sources, targets = _data(40)
    p = _packed(sources, targets, shuffle=False, batch_size=64)
    batch = p.batch(0)
    i = 0
    for r in range(batch["inputs"].shape[0]):
        for inputs, _, weights in _segments(batch, r):
            head = inputs[:weights.index(1.0) + 1]
            assert head == prompt_ids(sources[i], SEP, L - T).tolist() and head[-1] == SEP
            i += 1


def test_an_epoch_visits_every_example_once_and_batches_are_pure():
    sources, targets = _data()
    marked = [np.r_[i + 1000, t] for i, t in enumerate(targets)]  # first target id names the example
    p = _packed(sources, marked, seed=3)
    again = _packed(sources, marked, seed=3)
    found, rows = [], []
    for step in range(p.num_batches):
        batch = p.batch(step)
        for k, v in batch.items():
            np.testing.assert_array_equal(v, again.batch(step)[k], err_msg=k)
        weighted = batch["weights"] > 0  # an example's first weighted target is its first target id
        first_target = weighted & ((np.roll(batch["weights"], 1, axis=1) == 0) | (batch["positions"] == 0))
        for r, row in enumerate(p.rows(step).tolist()):
            if row not in rows:  # the last batch of an epoch goes on into the next
                rows.append(row)
                found += (batch["targets"][r][first_target[r]] - 1000).tolist()
    assert sorted(rows) == list(range(p.num_rows))
    assert sorted(found) == list(range(len(sources)))
    assert not np.array_equal(_packed(sources, marked, seed=4).batch(0)["inputs"], p.batch(0)["inputs"])
    half = p.batch(1, slice(0, B // 2))
    np.testing.assert_array_equal(half["inputs"], p.batch(1)["inputs"][:B // 2])


def test_eval_padding_rows_weigh_nothing():
    sources, targets = _data(30)
    p = _packed(sources, targets, shuffle=False, batch_size=64)
    batch = p.batch(0)
    assert p.num_rows < 64
    assert not batch["weights"][p.num_rows:].any() and not batch["segment_ids"][p.num_rows:].any()


def test_memory_mapped_and_joined_sources_pack_as_arrays():
    sources, targets = _data(50)
    joined = JoinedSources(Ragged.from_arrays(sources), Ragged.from_arrays(targets),
                           np.r_[np.arange(1, 50), -1], sep_id=SEP)
    by_view = _packed(joined, Ragged.from_arrays(targets), seed=1).batch(0)
    by_arrays = _packed([joined[i] for i in range(50)], targets, seed=1).batch(0)
    for k in by_view:
        np.testing.assert_array_equal(by_view[k], by_arrays[k], err_msg=k)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="room for a source token"):
        PackedCompletions([[3]], [[4]], seq_len=11, target_len=10, batch_size=1, seed=0, shuffle=False,
                          sep_id=SEP, eos_id=EOS, pad_id=PAD)
    with pytest.raises(ValueError, match="one target per source"):
        _packed([[3]], [[4], [5]])
