"""Word2Vec's data and task: the noise distribution and subsampling probabilities, batches as a
pure function of (seed, step) whose pairs respect the dynamic window and documents, the
similarity check, and one short run through the loop."""
import os

import numpy as np
import pytest

from llmjax.data.context_pairs import ContextPairs, keep_probabilities, noise_distribution, usable
from llmjax.data.embeddings_file import load_embeddings
from llmjax.data.tokenizers import ByteTokenizer
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.tasks.word2vec import RELATED, UNRELATED, similarity_scores, vocabulary_ids
from tests.helpers import tiny_config, write_corpus


def test_noise_is_unigram_to_the_three_quarters_over_the_tokens_that_take_part():
    counts = np.array([16, 81, 1, 0, 625, 2])
    special = np.array([0, 0, 0, 0, 0, 1], bool)
    ok = usable(counts, special, min_count=2)
    assert ok.tolist() == [True, True, False, False, True, False]
    p = noise_distribution(counts, ok)
    want = np.array([8, 27, 0, 0, 125, 0]) / 160  # 16^.75 = 8, 81^.75 = 27, 625^.75 = 125
    np.testing.assert_allclose(p, want)


def test_subsampling_keeps_word2vec_c_s_fraction():
    counts = np.array([160, 90, 5, 7, 745])
    ok = np.array([True, True, True, False, True])  # 7 takes no part: not in the total either
    keep = keep_probabilities(counts, ok, sample=0.01)  # threshold t * total = 0.01 * 1000 = 10
    # (sqrt(c / 10) + 1) * 10 / c: 160 -> 5 * 10/160, 90 -> 4 * 10/90, 5 -> (sqrt(.5) + 1) 2, capped at 1
    np.testing.assert_allclose(keep[:3], [50 / 160, 40 / 90, 1.0])
    assert keep[3] == 0.0
    np.testing.assert_array_equal(keep_probabilities(counts, ok, sample=0.0), ok.astype(float))


def _pairs(skipgram=True, seed=0, window=2, capacity=512, negatives=3):
    # a stream of distinct tokens, so a token's id is its position; EOS (id 99) ends documents
    stream = np.concatenate([np.arange(0, 30), [99], np.arange(30, 60), [99]])
    keep = np.ones(100)
    keep[99] = 0.0
    keep[[5, 6, 40]] = 0.5  # subsampled now and then
    noise = np.zeros(100)
    noise[:60] = np.arange(1, 61) ** 0.75
    noise /= noise.sum()
    return ContextPairs(stream, chunk_tokens=31, capacity=capacity, keep_V=keep, noise_V=noise,
                        eos_id=99, window=window, negatives=negatives, skipgram=skipgram, seed=seed,
                        shuffle=True)


@pytest.mark.parametrize("skipgram", [True, False])
def test_batches_are_a_pure_function_of_seed_and_step(skipgram):
    a, b = _pairs(skipgram), _pairs(skipgram)
    for step in (3, 0, 7):  # any order, a fresh reader: the same batch
        x, y = a.batch(step), b.batch(step)
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    rows = slice(8, 40)
    for k, v in a.batch(5, rows).items():
        np.testing.assert_array_equal(v, a.batch(5)[k][rows])
    assert any(not np.array_equal(a.batch(1)[k], a.batch(2)[k]) for k in a.batch(1))
    assert any(not np.array_equal(a.batch(1)[k], _pairs(skipgram, seed=1).batch(1)[k]) for k in a.batch(1))


def test_skipgram_pairs_stay_in_the_window_and_the_document():
    p = _pairs(window=2)
    for step in range(4):
        b = p.batch(step)
        real = b["weights"] > 0
        centers, contexts = b["inputs"][real, 0], b["targets"][real]
        assert real.sum() > 20 and not real[real.sum():].any()  # real rows first, then padding
        gap = np.abs(centers - contexts)
        # ids are positions: within 2 of each other, counting subsampled tokens as gone (<= 2 + 2)
        assert (gap >= 1).all() and (gap <= 4).all()
        assert ((centers < 30) == (contexts < 30)).all()  # never across the EOS
        assert not np.isin(b["inputs"], 99).any() and not np.isin(b["targets"][real], 99).any()
        # the pair (c, x) comes with (x, c) whenever x reaches c too: reach 1 always does
        pairs = set(zip(centers.tolist(), contexts.tolist()))
        kept = np.unique(centers)
        for c in kept:
            nxt = kept[kept > c]
            if len(nxt) and ((nxt[0] < 30) == (c < 30)):
                assert (c, nxt[0]) in pairs and (nxt[0], c) in pairs  # adjacent kept tokens


def test_cbow_rows_hold_the_masked_context_of_their_center():
    b = _pairs(skipgram=False, window=2).batch(0)
    real = b["weights"] > 0
    for ctx, mask, center in zip(b["inputs"][real], b["input_mask"][real], b["targets"][real]):
        assert mask.sum() >= 1 and center not in ctx[mask > 0]
        assert (np.abs(ctx[mask > 0] - center) <= 4).all()
        assert ((ctx[mask > 0] < 30) == (center < 30)).all()


def test_negatives_follow_the_noise_distribution():
    p = _pairs(capacity=4096, negatives=10)
    draws = np.concatenate([p.batch(s)["negatives"].reshape(-1) for s in range(5)])
    freq = np.bincount(draws, minlength=100) / len(draws)
    want = np.zeros(100)
    want[:60] = np.arange(1, 61) ** 0.75
    want /= want.sum()
    assert freq[60:].sum() == 0
    np.testing.assert_allclose(freq[:60], want[:60], atol=0.003)  # 204,800 draws


def test_similarity_scores_related_against_re_paired():
    words = sorted({w for pair in RELATED for w in pair})
    ids = {w: i for i, w in enumerate(words)}
    unit = np.random.default_rng(0).normal(size=(len(words), 8))
    for a, b in RELATED:  # related pairs share a direction
        unit[ids[b]] = unit[ids[a]] + 0.1 * unit[ids[b]]
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    s = similarity_scores(unit, ids)
    assert s["sim_pairs"] == len(RELATED) and s["sim_auc"] > 0.95
    assert s["sim_related"] > 0.9 > s["sim_unrelated"]
    assert not set(UNRELATED) & set(RELATED)
    assert similarity_scores(unit, {"read": 0, "write": 1}) == {"sim_pairs": 1.0}  # no unrelated pair scored


@pytest.mark.parametrize("tokenizer", ["word", "byte"])
def test_a_short_run_learns_and_saves_its_vectors(tmp_path, tokenizer):
    c = tiny_config(write_corpus(str(tmp_path / "corpus"), num_files=6), model="word2vec", task="word2vec")
    c.data.tokenizer, c.data.vocab_size, c.data.spm_train_chars = tokenizer, 3000, 10**9
    c.model.dim, c.model.window, c.model.negatives = 16, 3, 4
    c.task.min_count = 2
    c.train.batch_size, c.train.num_steps, c.train.eval_every, c.train.eval_steps = 2048, 30, 30, 0
    c.optim.name, c.optim.b2, c.optim.lr, c.optim.schedule = "adamw", 0.999, 0.02, "linear"
    c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 0, 0.0, 0.0
    lines = []
    out = train_and_evaluate(resolve(c), str(tmp_path / "run"), log=lines.append)
    assert out["loss"] < 5 * np.log(2) - 0.3  # 1 + 4 candidates at score 0 give 5 log 2
    assert out["step"] == 30
    assert 0.0 <= out["sim_auc"] <= 1.0 if tokenizer == "word" else out["sim_pairs"] <= 1  # bytes: x/y at most
    assert any(line.startswith("nearest neighbours") for line in lines)
    vectors, tokens, fingerprint = load_embeddings(os.path.join(tmp_path, "run", "embeddings.npy"))
    assert vectors.shape == (len(tokens), 16)
    if tokenizer == "word":  # the words that took part, by string
        assert fingerprint is None and "self" in tokens and "" not in tokens
    else:  # every id of the tokenizer, in order: what model.embed_init reads
        assert fingerprint == ByteTokenizer().fingerprint() and tokens == ByteTokenizer().pieces()


def test_a_word_is_its_piece_or_the_word_initial_piece_whichever_is_more_frequent():
    pieces = ["\u2581read", "read", "\u2581write", "x", "", "\u2581"]
    counts = np.array([5, 9, 3, 1, 50, 50])
    ids = vocabulary_ids(pieces, counts, np.array([True, True, True, False, True, True]))
    assert ids == {"read": 1, "write": 2}  # x takes no part; "" and a bare marker are no word


def test_micro_batches_are_refused_in_one_line():
    from llmjax.config import ConfigError
    from llmjax.tasks import registry
    c = tiny_config("stdlib", model="word2vec", task="word2vec")
    c.train.grad_accum_steps = 2
    with pytest.raises(ConfigError, match="config.train.grad_accum_steps=2"):
        registry.build(resolve(c))


def test_a_negative_group_shares_one_draw_and_changes_nothing_else():
    single, grouped = _pairs(), _pairs()
    grouped.group = 8
    for step in (0, 3):
        a, b = single.batch(step), grouped.batch(step)
        for k in a:
            if k != "negatives":
                np.testing.assert_array_equal(a[k], b[k])
        groups = b["negatives"].reshape(-1, 8, 3)
        assert (groups == groups[:, :1]).all() and len(np.unique(groups[:, 0], axis=0)) > 1
