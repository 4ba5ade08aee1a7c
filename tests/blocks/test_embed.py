"""Token embedding lookup, tied logits x @ E^T, untied head."""
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.blocks.embed import Embed, Unembed


def test_lookup_and_tied_logits():
    mod = Embed(vocab_size=11, features=4, init_std=0.5)
    tokens = np.array([[1, 10, 3]])
    p = mod.init(jax.random.key(0), tokens)["params"]
    assert p["embedding"].names == ("vocab", "embed")
    table = np.asarray(p["embedding"].value, np.float64)
    assert abs(table.std() - 0.5) < 0.2
    np.testing.assert_array_equal(mod.apply({"params": p}, tokens)[0], table[[1, 10, 3]].astype(np.float32))
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    logits = jax.jit(lambda p, x: mod.apply({"params": p}, x, method=Embed.attend))(p, x)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 3, 11)
    np.testing.assert_allclose(logits, x @ table.T, atol=1e-5)


def test_bf16_lookup_float32_logits_and_untied_head():
    mod = Embed(vocab_size=7, features=4, dtype="bfloat16")
    p = mod.init(jax.random.key(0), np.zeros((1, 2), np.int32))["params"]
    assert mod.apply({"params": p}, np.zeros((1, 2), np.int32)).dtype == jnp.bfloat16
    logits = mod.apply({"params": p}, jnp.ones((1, 2, 4), jnp.bfloat16), method=Embed.attend)
    assert logits.dtype == jnp.float32
    head = Unembed(vocab_size=7)
    x = np.random.default_rng(0).normal(size=(1, 2, 4)).astype(np.float32)
    hp = head.init(jax.random.key(0), x)["params"]
    assert hp["kernel"].names == ("embed", "vocab")
    np.testing.assert_allclose(head.apply({"params": hp}, x), x @ np.asarray(hp["kernel"].value), atol=1e-6)
