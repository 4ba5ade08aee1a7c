"""JoinedSources: the memory's target joined to each source after [SEP], read as a view. Packed
batches of the view equal packing the joined sequences built in memory, with the matches of
every kind (none, past the pool, at the end of the flat array)."""
import numpy as np
import pytest

from llmjax.data.example_cache import Ragged
from llmjax.data.memory_input import JoinedSources, matches_over
from llmjax.data.packed_pairs import PackedPairs

SEP = 99


def _data(n=40, m=25, seed=0):
    rng = np.random.default_rng(seed)
    sources = [rng.integers(3, 50, rng.integers(1, 9)).tolist() for _ in range(n)]
    memory = [rng.integers(3, 50, rng.integers(1, 12)).tolist() for _ in range(m)]
    match = np.where(rng.random(n) < 0.6, rng.integers(0, m, n), -1)
    match[0], match[-1] = m - 1, -1  # the memory's last target; a source alone at the end
    return sources, memory, match


def test_joined_sources_read_like_the_joined_arrays():
    sources, memory, match = _data()
    joined = JoinedSources(Ragged.from_arrays(sources), Ragged.from_arrays(memory), match, SEP)
    want = [s + ([SEP] + memory[m] if m >= 0 else []) for s, m in zip(sources, match.tolist())]
    assert len(joined) == len(want)
    assert joined.lengths().tolist() == [len(w) for w in want]
    assert [joined[i].tolist() for i in range(len(want))] == want
    flat = np.concatenate(want)
    where = np.array([[0, 5, len(flat) - 1], [len(flat) // 2, 1, 17]])
    np.testing.assert_array_equal(joined.flat[where], flat[where])
    assert len(joined.flat) == len(flat)


def test_packed_batches_of_the_view_equal_packing_the_joined_arrays():
    sources, memory, match = _data(n=120)
    targets = [[7] * (1 + i % 5) for i in range(len(sources))]
    joined = JoinedSources(Ragged.from_arrays(sources), Ragged.from_arrays(memory), match, SEP)
    want = [s + ([SEP] + memory[m] if m >= 0 else []) for s, m in zip(sources, match.tolist())]
    pack = lambda srcs: PackedPairs(srcs, targets, source_len=16, target_len=8, batch_size=4, seed=3,  # noqa: E731
                                    shuffle=True, eos_id=1, pad_id=0, start_id=1)
    a, b = pack(joined), pack(want)
    assert a.stats == b.stats and a.stats["source_truncated"] > 0  # cut at source_len as any source
    for step in (0, 1, a.num_batches - 1, a.num_batches + 2):
        for k, v in b.batch(step).items():
            np.testing.assert_array_equal(a.batch(step)[k], v, err_msg=f"{step} {k}")


def test_matches_over_thresholds_and_pads_past_the_pool():
    got = matches_over(np.array([4, -1, 2]), np.array([0.9, 0.0, 0.3], np.float32), 0.5, count=5)
    assert got.tolist() == [4, -1, -1, -1, -1]
    assert matches_over(np.array([4, 2]), np.array([0.9, 0.6]), 0.5, count=1).tolist() == [4]


def test_matches_must_fit_the_sources_and_the_memory():
    sources, memory = Ragged.from_arrays([[3], [4]]), Ragged.from_arrays([[5]])
    with pytest.raises(ValueError, match="1 matches for 2 sources"):
        JoinedSources(sources, memory, np.array([0]), SEP)
    with pytest.raises(ValueError, match="match 1 is past the memory's 1 targets"):
        JoinedSources(sources, memory, np.array([0, 1]), SEP)
