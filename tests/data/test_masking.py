"""MLM masking on real sentence-pair batches: exact counts, 80/10/10 within binomial bounds,
never specials or padding, whole words whole, and masks a pure function of (seed, step, row)."""
import math

import numpy as np
import pytest

from llmjax.data.masking import EVAL_STREAM, MaskingTables, mask_tokens, num_to_predict
from llmjax.data.pipeline import tokenize_documents
from llmjax.data.sentence_pairs import SentencePairs
from tests.data.bert_corpus import stdlib_texts, tokenizers

P = 16


@pytest.fixture(scope="module", params=["byte", "sentencepiece"])
def setup(request):
    """(tokenizer, tables, tokens (B, L), attention_mask) of 2048 real [CLS] A [SEP] B [SEP] rows."""
    tok = tokenizers()[request.param]
    stream = tokenize_documents(tok, list(stdlib_texts(30, 20_000)))
    pairs = SentencePairs(stream, tok, seq_len=128, batch_size=2048, seed=0, shuffle=True,
                          passes=2, short_seq_prob=0.3)  # many rows end in padding
    x = pairs.batch(0)
    attn = x["attention_mask"].copy()
    attn[::2, 100:] = 0  # masking must trust the attention mask, not look for [PAD]
    assert not tok.special_mask()[x["tokens"][::2, 100:][attn[::2, 100:] == 0]].all()
    return tok, MaskingTables.from_tokenizer(tok), x["tokens"], attn


def _mask(setup, rows=slice(None), **kw):
    _, tables, tokens, attn = setup
    args = {"seed": 7, "step": 3, "row_offset": rows.start or 0, "max_predictions": P} | kw
    return mask_tokens(tokens[rows], attn[rows], tokenizer_tables=tables, **args)


def _candidates(setup):
    tok, _, tokens, attn = setup
    return (attn == 1) & ~tok.special_mask()[tokens]


def _sigma_ok(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_counts_positions_and_ids(setup):
    tokens = setup[2]
    out = _mask(setup)
    cand = _candidates(setup)
    n = cand.sum(1)
    k = np.array([min(P, max(1, round(0.15 * c))) for c in n.tolist()])  # BERT's formula
    np.testing.assert_array_equal(num_to_predict(n, 0.15, P), k)
    w, pos, ids = out["mlm_weights"], out["mlm_positions"], out["mlm_ids"]
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "inputs": (tokens.shape, np.int32), "mlm_positions": ((len(tokens), P), np.int32),
        "mlm_ids": ((len(tokens), P), np.int32), "mlm_weights": ((len(tokens), P), np.float32)}
    np.testing.assert_array_equal(w.sum(1), k)
    assert (k < P).any() and (k == P).any()  # both regimes are exercised
    rows = np.arange(len(tokens))[:, None]
    real = w == 1
    assert cand[rows, pos][real].all()  # never a special or a padding position
    assert (np.diff(np.where(real, pos, 10**6), axis=1)[real[:, 1:]] > 0).all()  # increasing
    np.testing.assert_array_equal(ids[real], tokens[rows, pos][real])
    assert (pos[~real] == 0).all() and (ids[~real] == 0).all() and (w[~real] == 0).all()
    selected = np.zeros(tokens.shape, bool)
    selected[rows.repeat(P, 1)[real], pos[real]] = True
    changed = out["inputs"] != tokens
    assert not (changed & ~selected).any()  # nothing else is touched


def test_80_10_10_and_uniform_selection(setup):
    tok, tables, tokens, _ = setup
    out = _mask(setup)
    real = out["mlm_weights"] == 1
    rows = np.arange(len(tokens))[:, None].repeat(P, 1)[real]
    new = out["inputs"][rows, out["mlm_positions"][real]]
    old = out["mlm_ids"][real]
    n, R = len(new), len(tables.replacements_R)
    assert n > 20_000
    masked = new == tok.mask_id
    kept = new == old
    replaced = ~masked & ~kept
    assert _sigma_ok(masked.sum(), n, 0.8)
    assert _sigma_ok(kept.sum(), n, 0.1 + 0.1 / R)  # a random replacement can hit the original
    assert _sigma_ok(replaced.sum(), n, 0.1 * (1 - 1 / R))
    assert not tok.special_mask()[new[replaced]].any()
    counts = np.bincount(new[replaced], minlength=tok.vocab_size)[tables.replacements_R]
    expected = replaced.sum() / R  # uniform over non-special ids: chi-square vs its df
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < (R - 1) + 5 * math.sqrt(2 * (R - 1))
    # selection is uniform over the candidates: the share selected in the first half of each
    # row's candidates matches the second half's
    cand = _candidates(setup)
    order = np.cumsum(cand, 1)
    first_half = cand & (order <= cand.sum(1, keepdims=True) / 2)
    sel = np.zeros(tokens.shape, bool)
    sel[rows, out["mlm_positions"][real]] = True
    a, b = (sel & first_half).sum(), (sel & cand & ~first_half).sum()
    assert _sigma_ok(a, a + b, first_half.sum() / cand.sum())


def test_deterministic_per_row_and_sliceable(setup):
    full = _mask(setup)
    again = _mask(setup)
    for key in full:
        np.testing.assert_array_equal(full[key], again[key])
    for rows in (slice(8, 24), slice(100, 101)):  # another host's rows: the same masks
        part = _mask(setup, rows=rows)
        for key in full:
            np.testing.assert_array_equal(part[key], full[key][rows])
    for other in ({"step": 4}, {"seed": 8}, {"stream": EVAL_STREAM}):
        assert not np.array_equal(_mask(setup, **other)["mlm_positions"], full["mlm_positions"])
    with pytest.raises(ValueError, match="stream=EVAL_STREAM"):
        _mask(setup, step=-1)


def test_random_replacements_are_uniform(setup):
    tok, tables, tokens, _ = setup
    out = _mask(setup, rate=1.0, max_predictions=tokens.shape[1])
    real = out["mlm_weights"] == 1
    rows = np.arange(len(tokens))[:, None].repeat(tokens.shape[1], 1)[real]
    new, old = out["inputs"][rows, out["mlm_positions"][real]], out["mlm_ids"][real]
    replaced = new[(new != old) & (new != tok.mask_id)]
    R = len(tables.replacements_R)
    assert len(replaced) > 50 * R
    counts = np.bincount(replaced, minlength=tok.vocab_size)[tables.replacements_R]
    expected = len(replaced) / R
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < (R - 1) + 5 * math.sqrt(2 * (R - 1))


def _words(pieces, ids, cand):
    """Word index of each token, one token at a time (the docstring's rule)."""
    out, w = [], -1
    for t, (i, c) in enumerate(zip(ids, cand)):
        prev_ok = t > 0 and cand[t - 1]
        start = (t == 0 or not c or not prev_ok or pieces[i][:1].isspace()
                 or pieces[ids[t - 1]][-1:].isspace())
        w += start
        out.append(w)
    return out


def test_whole_words(setup):
    tok, _, tokens, _ = setup
    out = _mask(setup, whole_word=True)
    cand = _candidates(setup)
    k = num_to_predict(cand.sum(1), 0.15, P)
    pieces = tok.pieces()
    got = out["mlm_weights"].sum(1).astype(int)
    assert (got <= k).all() and got.mean() > 0.8 * k.mean()
    multi = 0
    for r in range(0, len(tokens), 8):
        words = np.array(_words(pieces, tokens[r].tolist(), cand[r].tolist()))
        sel = np.zeros(tokens.shape[1], bool)
        sel[out["mlm_positions"][r][out["mlm_weights"][r] == 1]] = True
        for w in np.unique(words[cand[r]]):
            member = (words == w) & cand[r]
            assert sel[member].all() or not sel[member].any(), (r, w)  # whole or nothing
            if not sel[member].any():  # greedy: any word left out did not fit
                assert member.sum() > k[r] - got[r], (r, w)
            multi += sel[member].all() and member.sum() > 1
    assert multi > 50  # words of several tokens do get selected whole


def test_tables_and_errors(setup):
    tok, tables, tokens, attn = setup
    assert tables.mask_id == tok.mask_id
    assert not np.isin(tables.replacements_R, [tok.eos_id, *tok.special_ids.values()]).any()
    assert len(tables.replacements_R) == tok.vocab_size - tok.special_mask().sum()
    with pytest.raises(ValueError, match="same"):
        mask_tokens(tokens, attn[:, :5], tokenizer_tables=tables, seed=0, step=0, row_offset=0,
                    max_predictions=P)
    with pytest.raises(ValueError, match="max_predictions=0"):
        mask_tokens(tokens, attn, tokenizer_tables=tables, seed=0, step=0, row_offset=0,
                    max_predictions=0)
    empty = mask_tokens(np.full((2, 8), tok.pad_id), np.zeros((2, 8)), tokenizer_tables=tables,
                        seed=0, step=0, row_offset=0, max_predictions=4)
    assert empty["mlm_weights"].sum() == 0 and (empty["inputs"] == tok.pad_id).all()
