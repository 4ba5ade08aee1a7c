"""Streaming yields generate's tokens (same rng), compiles per prompt bucket not per token; the
incremental detokenizer prints complete characters only, with real byte and sentencepiece
tokenizers."""
import functools
import os
import sysconfig

import jax
import numpy as np
import pytest

from llmjax.data.tokenizers import ByteTokenizer, SentencePieceTokenizer
from llmjax.generation import stream
from llmjax.generation.decode import generate
from llmjax.generation.stream import IncrementalDetokenizer, bucket_length, stream_tokens
from llmjax.models.gpt import GPTConfig
from llmjax.models.registry import build

CFG = GPTConfig(vocab_size=64, num_layers=2, d_model=64, num_heads=4, num_kv_heads=2, mlp_dim=128,
                max_len=32, init_std=0.5, tie_embeddings=False, position="rope")
TEXT = "naïve café → 🎉 done, é 日本 ok"


@functools.lru_cache(maxsize=None)
def _model():
    model = build(CFG)
    return model, model.init(jax.random.key(1), np.zeros((1, 4), np.int32))["params"]


@pytest.mark.parametrize("how, prompt, seed", [
    (dict(temperature=1.0, top_k=20), [5, 9, 2], 0),
    (dict(temperature=0.7, top_p=0.9), [7, 1, 3, 3, 8, 12, 40, 2, 9], 1),  # bucket 16
    (dict(temperature=0.0), [5, 9, 2], 2),
])
def test_stream_yields_the_tokens_generate_returns(how, prompt, seed):
    model, params = _model()
    want = generate(model, params, [prompt], max_new_tokens=12, rng=jax.random.key(seed), **how)[0]
    got = list(stream_tokens(model, params, prompt, max_new_tokens=12, rng=jax.random.key(seed), **how))
    assert got == want.tolist() and len(set(got)) > 3


def test_stream_stops_after_eos_like_generate():
    model, params = _model()
    kw = dict(max_new_tokens=12, rng=jax.random.key(3), temperature=1.0)
    free = generate(model, params, [[5, 9, 2]], **kw)[0].tolist()
    eos = free[4]
    cut = free[:free.index(eos) + 1]
    assert list(stream_tokens(model, params, [5, 9, 2], eos_id=eos, **kw)) == cut
    np.testing.assert_array_equal(generate(model, params, [[5, 9, 2]], eos_id=eos, **kw)[0][:len(cut)], cut)


def test_compiles_once_per_prompt_bucket_not_per_token():
    model, params = _model()
    first, step = stream._first._cache_size(), stream._next._cache_size()
    for prompt in ([1, 2, 3], [4, 5, 6, 7, 8], [9] * 8):  # one bucket (8), three lengths
        assert len(list(stream_tokens(model, params, prompt, max_new_tokens=10, rng=jax.random.key(0)))) == 10
    assert (stream._first._cache_size() - first, stream._next._cache_size() - step) == (1, 1)


def test_bucket_length():
    assert [bucket_length(p, 22) for p in (1, 3, 8, 9, 16, 20)] == [8, 8, 8, 16, 16, 22]
    assert bucket_length(9, 12) == 12  # the cap: the model's longest prompt
    assert bucket_length(40, None) == 64


def _pushes(tok, ids, context=()):
    detok = IncrementalDetokenizer(tok, context)
    return [detok.push(i) for i in ids], detok.flush()


def test_byte_detokenizer_holds_back_split_characters():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    pieces, rest = _pushes(tok, ids)
    assert "".join(pieces) == TEXT and rest == ""
    assert not any("\ufffd" in p for p in pieces)
    i = TEXT.index("é")
    at = len(TEXT[:i].encode())
    assert pieces[at:at + 2] == ["", "é"]  # its first byte prints nothing, its second the character
    emoji = len(TEXT[:TEXT.index("🎉")].encode())
    assert pieces[emoji:emoji + 4] == ["", "", "", "🎉"]
    # A sample that is not valid UTF-8 still shows, as U+FFFD, once flushed.
    pieces, rest = _pushes(tok, [104, 0xC3])
    assert pieces == ["h", ""] and rest == "\ufffd"


@pytest.fixture(scope="module")
def spm():
    """A small BPE on a few KB of real source plus a line of accented prose (no → or emoji: those
    fall back to byte pieces)."""
    src = sysconfig.get_paths()["stdlib"]
    texts = [open(os.path.join(src, n), encoding="utf-8").read()[:3000] for n in ("textwrap.py", "abc.py")]
    return SentencePieceTokenizer.train(texts + ["Le café est naïve, déjà vu.\n" * 20], 400, "bpe", 100_000)


def test_sentencepiece_detokenizer_prints_what_decode_gives(spm):
    ids = spm.encode(TEXT)
    names = [spm.sp.id_to_piece(i) for i in ids]
    assert any(n.startswith("\u2581") and len(n) > 1 for n in names)  # leading-space pieces
    assert sum(n.startswith("<0x") for n in names) >= 7  # → and 🎉 split into byte pieces
    pieces, rest = _pushes(spm, ids)
    assert "".join(pieces) == spm.decode(ids) == TEXT and rest == ""
    assert not any("\ufffd" in p for p in pieces)
    # With the prompt as context only the continuation's text comes back, its leading space kept.
    cut = next(k for k, n in enumerate(names) if k and n.startswith("\u2581"))
    pieces, _ = _pushes(spm, ids[cut:], context=ids[:cut])
    assert "".join(pieces) == TEXT[len(spm.decode(ids[:cut])):] and pieces[0].startswith(" ")
