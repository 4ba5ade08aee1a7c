"""Beam search equals exhaustive search under the same scoring, is greedy at beam size 1, treats
ragged rows as alone, returns distinct sorted n-best lists, and reorders scanned caches right."""
import dataclasses
import functools
import itertools

import flax.linen as nn
import jax
import numpy as np
import pytest

from llmjax.generation.beam import beam_search, cache_batch_axes, repeated_ngram_mask
from llmjax.generation.decode import generate
from llmjax.models.gpt import GPTConfig
from llmjax.models.registry import build

TINY = GPTConfig(vocab_size=8, num_layers=2, d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64,
                 max_len=16, init_std=0.6, tie_embeddings=False, position="rope")
WIDE = GPTConfig(vocab_size=64, num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=128,
                 max_len=32, init_std=0.5, tie_embeddings=False)
PROMPTS = [[5, 9, 2], [7, 1, 3, 3, 8, 12, 40], [33], [4, 4, 17, 60, 2]]


@functools.lru_cache(maxsize=None)
def _model(cfg):
    model = build(cfg)
    return model, model.init(jax.random.key(1), np.zeros((1, 4), np.int32))["params"]


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, prompt_HxP, continuations_HxN):
    return model.apply({"params": params}, prompt_HxP, np.ones(prompt_HxP.shape, np.int32), continuations_HxN,
                       method="score")


def _score(model, params, prompt, continuations_HxN, eos, alpha, reward=0.0):
    """Each continuation's length-penalised log-probability (plus reward per token) from the
    model's uncached `score`: its length runs to its first eos (included), else it is all N tokens."""
    H, N = continuations_HxN.shape
    prompt_HxP = np.repeat(np.asarray([prompt], np.int32), H, 0)
    logits = _logits(model, params, prompt_HxP, continuations_HxN)
    logp_HxN = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits[:, :N])),
                                  continuations_HxN[:, :, None], axis=2)[:, :, 0]
    is_eos = continuations_HxN == eos
    length_H = np.where(is_eos.any(1), is_eos.argmax(1) + 1, N)
    total_H = np.where(np.arange(N)[None] < length_H[:, None], logp_HxN, 0.0).sum(1)
    return total_H / ((5.0 + length_H) / 6.0) ** alpha + reward * length_H


def _exhaustive(model, params, prompt, n, eos, alpha, vocab, reward=0.0):
    """Every hypothesis (L-1 non-EOS tokens then EOS, eos-padded, for L = 1..n; n non-EOS
    tokens), scored, best first."""
    words = [t for t in range(vocab) if t != eos]
    hyps = [list(body) + [eos] * (n - len(body)) for length in range(1, n + 1)
            for body in itertools.product(words, repeat=length - 1)]
    hyps += [list(body) for body in itertools.product(words, repeat=n)]
    hyps_HxN = np.asarray(hyps, np.int32)
    score_H = _score(model, params, prompt, hyps_HxN, eos, alpha, reward)
    order = np.argsort(-score_H, kind="stable")
    return hyps_HxN[order], score_H[order]


@pytest.mark.parametrize("alpha,reward", [(0.6, 0.0), (0.6, 0.7), pytest.param(0.0, 0.0, marks=pytest.mark.slow)])
def test_wide_beam_equals_exhaustive_search(alpha, reward):
    """V=8, 3 new tokens: 57 EOS-ended + 343 truncated hypotheses; a beam of 400 keeps them all."""
    model, params = _model(TINY)
    prompts, eos = [[5, 1, 2], [6]], 6
    tokens, scores = beam_search(model, params, prompts, beam_size=400, max_new_tokens=3, eos_id=eos,
                                 alpha=alpha, num_return=12, length_reward=reward)
    assert tokens.shape == (2, 12, 3) and tokens.dtype == np.int32 and scores.dtype == np.float32
    for prompt, got_tokens, got_scores in zip(prompts, tokens, scores):
        want_tokens, want_scores = _exhaustive(model, params, prompt, 3, eos, alpha, 8, reward)
        # both ends: finished (EOS-padded) and truncated hypotheses are among the best
        assert (want_tokens[:12] == eos).any() and not (want_tokens[:12] == eos).any(1).all()
        np.testing.assert_array_equal(got_tokens, want_tokens[:12])
        np.testing.assert_allclose(got_scores, want_scores[:12], atol=1e-4)


def test_no_repeat_ngram_equals_exhaustive_search_without_repeats():
    """With no_repeat_ngram=2 a beam wide enough for every hypothesis returns the exhaustive
    search's best among those whose new tokens repeat no bigram (here: t0 = t1 = t2)."""
    model, params = _model(TINY)
    prompt, eos = [5, 1, 2], 6
    tokens, scores = beam_search(model, params, [prompt], beam_size=400, max_new_tokens=3, eos_id=eos,
                                 alpha=0.6, num_return=12, no_repeat_ngram=2)
    want_tokens, want_scores = _exhaustive(model, params, prompt, 3, eos, 0.6, 8)
    keep = ~((want_tokens[:, 0] == want_tokens[:, 1]) & (want_tokens[:, 1] == want_tokens[:, 2])
             & (want_tokens[:, 0] != eos))
    assert not keep[:12].all()  # the plain search's best include a repeat, so the test can fail
    np.testing.assert_array_equal(tokens[0], want_tokens[keep][:12])
    np.testing.assert_allclose(scores[0], want_scores[keep][:12], atol=1e-4)


def test_length_reward_keeps_searching_past_finished_beams():
    """A narrow beam whose finished slots fill early must still search on when a length reward can
    lift a longer hypothesis above them (the early-exit bound counts the reward): with a reward
    far above any log-probability the best hypothesis runs to max_new_tokens."""
    model, params = _model(WIDE)
    n = 8
    # EOS = the token greedy decoding emits first, so EOS ranks in the beam at once and often.
    eos = int(generate(model, params, PROMPTS[:1], max_new_tokens=1, rng=jax.random.key(0), temperature=0.0)[0, 0])
    _, plain = beam_search(model, params, PROMPTS[:1], beam_size=2, max_new_tokens=n, eos_id=eos, alpha=0.0)
    assert plain[0, 0] > -5.0  # without the reward an early EOS wins
    tokens, scores = beam_search(model, params, PROMPTS[:1], beam_size=2, max_new_tokens=n, eos_id=eos,
                                 alpha=0.0, length_reward=100.0)
    assert not (tokens[0, 0] == eos).any()
    assert scores[0, 0] > 100.0 * n - 100


def test_repeated_ngram_mask_by_hand():
    seq = np.array([[[3, 4, 3, 4, 3, 0, 0]]], np.int32)  # one beam, 5 tokens chosen
    banned = lambda i, n: set(np.flatnonzero(np.asarray(repeated_ngram_mask(seq, i, n, 8))[0, 0]))  # noqa: E731
    assert banned(5, 2) == {4}  # last token 3: the bigram (3, 4) was seen
    assert banned(5, 3) == {4}  # (4, 3) -> 4 seen at 1..3
    assert banned(4, 3) == {3}  # first 4 tokens 3 4 3 4: (3, 4) -> 3 seen at 0..2
    assert banned(2, 3) == set() and banned(5, 1) == {3, 4}


def test_beam_size_1_is_greedy():
    model, params = _model(WIDE)
    greedy = functools.partial(generate, model, params, PROMPTS, max_new_tokens=10, rng=jax.random.key(0),
                               temperature=0.0)
    plain = greedy()
    assert len(np.unique(plain)) > 5
    # An EOS that greedy emits mid-row: with alpha 0 beam size 1 stops there, like greedy.
    eos = int(plain[0, 3])
    tokens, _ = beam_search(model, params, PROMPTS, beam_size=1, max_new_tokens=10, eos_id=eos, alpha=0.0)
    np.testing.assert_array_equal(tokens[:, 0], greedy(eos_id=eos))
    # An EOS greedy never emits: the greedy path, whatever alpha.
    unused = int(np.setdiff1d(np.arange(64), plain)[0])
    tokens, _ = beam_search(model, params, PROMPTS, beam_size=1, max_new_tokens=10, eos_id=unused, alpha=0.6)
    np.testing.assert_array_equal(tokens[:, 0], plain)


def test_ragged_batch_equals_each_prompt_alone():
    model, params = _model(WIDE)
    search = functools.partial(beam_search, model, params, beam_size=4, max_new_tokens=8, eos_id=5,
                               num_return=3)
    tokens, scores = search(PROMPTS[:3])
    for i, prompt in enumerate(PROMPTS[:3]):
        alone_tokens, alone_scores = search([prompt])
        np.testing.assert_array_equal(tokens[i], alone_tokens[0])
        np.testing.assert_allclose(scores[i], alone_scores[0], atol=1e-5)


def test_n_best_is_distinct_sorted_and_scored_by_the_model():
    model, params = _model(WIDE)
    eos = 5
    tokens, scores = beam_search(model, params, PROMPTS, beam_size=8, max_new_tokens=8, eos_id=eos,
                                 alpha=0.6, num_return=6)
    for prompt, row_tokens, row_scores in zip(PROMPTS, tokens, scores):
        assert len({tuple(t) for t in row_tokens.tolist()}) == 6
        assert np.all(np.diff(row_scores) <= 0) and np.all(np.isfinite(row_scores))
        np.testing.assert_allclose(row_scores, _score(model, params, prompt, row_tokens, eos, 0.6), atol=1e-4)
        for t in row_tokens:  # a finished hypothesis is EOS-padded
            hits = np.flatnonzero(t == eos)
            assert not len(hits) or np.all(t[hits[0]:] == eos)


def _stacked(params, num_layers):
    """Unrolled parameters (layer_0, layer_1, ...) as nn.scan's stacked `layers`."""
    params = dict(params)
    layers = [params.pop(f"layer_{i}") for i in range(num_layers)]
    params["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
    return params


def test_scanned_layers_give_the_unrolled_result():
    model, params = _model(WIDE)
    scanned = build(dataclasses.replace(WIDE, scan_layers=True))
    # layers/attn/{cache_index, cached_key, cached_positions, cached_segment_ids, cached_value},
    # next_position: the layer axis leads, the fill index is shared by all rows
    assert cache_batch_axes(scanned, 3, 2) == [None, 1, 1, 1, 1, 0]
    search = functools.partial(beam_search, beam_size=4, max_new_tokens=8, eos_id=5, num_return=4)
    want_tokens, want_scores = search(model, params, PROMPTS)
    tokens, scores = search(scanned, _stacked(nn.unbox(params), WIDE.num_layers), PROMPTS)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)


def test_bad_arguments_are_refused():
    model, params = _model(TINY)
    with pytest.raises(ValueError, match="num_return"):
        beam_search(model, params, [[1]], beam_size=2, num_return=3, max_new_tokens=2, eos_id=3)
    with pytest.raises(ValueError, match="at least one new token"):
        beam_search(model, params, [[1]], beam_size=2, max_new_tokens=0, eos_id=3)
