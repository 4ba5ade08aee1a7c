"""The vocabulary padding rows (ids >= the tokenizer's size, added so the table is a multiple of
64) carry no probability in any family's output: not at initialisation, not in generation.
Before the mask, the byte tokenizer's 262 ids padded to 320 put ~18% of the mass on dead ids."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.generation.decode import generate
from llmjax.models.bert import BertConfig
from llmjax.models.encdec import EncDecConfig
from llmjax.models.gpt import GPTConfig
from llmjax.models.lstm import LSTMConfig
from llmjax.models.registry import build
from llmjax.training.state import values

REAL, PADDED = 262, 320  # the byte tokenizer's ids, padded to a multiple of 64
SMALL = dict(num_layers=1, d_model=32, num_heads=2, mlp_dim=64, init_std=0.5)
FAMILIES = {
    "gpt": GPTConfig(**SMALL),
    "gpt-untied": GPTConfig(**SMALL, tie_embeddings=False),
    "bert": BertConfig(**SMALL),
    "encdec-copy": EncDecConfig(**SMALL, copy_attention=True, start_id=1),
    "encdec-untied": EncDecConfig(**SMALL, tie_embeddings=False, share_embeddings=False, start_id=1),
    "lstm": LSTMConfig(num_layers=1, d_model=32, init_std=0.5),
    "lstm-untied": LSTMConfig(num_layers=1, d_model=32, init_std=0.5, tie_embeddings=False),
}
TOKENS = np.random.default_rng(0).integers(0, REAL, size=(2, 12)).astype(np.int32)


def _finalized(name):
    return FAMILIES[name].finalize(REAL, 16, "cpu", "float32")


def _output(name):
    cfg = _finalized(name)
    model = build(cfg)
    args = (TOKENS, TOKENS) if cfg.name == "encdec" else (TOKENS,)
    params = values(model.init(jax.random.key(0), *args)["params"])
    out = model.apply({"params": params}, *args)
    return out[0] if isinstance(out, tuple) else out  # BERT: (mlm, nsp)


def test_finalize_keeps_the_real_vocabulary():
    for name in FAMILIES:
        cfg = _finalized(name)
        assert (cfg.vocab_size, cfg.real_vocab_size) == (PADDED, REAL), name


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_padded_ids_carry_no_probability(name):
    """Softmax of the logits (log-probabilities with copy attention) puts exactly 0 on padded ids,
    while the real ids keep all of it and every logit stays finite."""
    logits = _output(name)
    assert logits.shape[-1] == PADDED
    assert bool(jnp.all(jnp.isfinite(logits)))
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    assert float(p[..., REAL:].sum(-1).max()) <= 1e-30, name
    np.testing.assert_allclose(np.asarray(p[..., :REAL].sum(-1)), 1.0, atol=1e-5)


def test_real_vocab_zero_masks_nothing():
    """Configs that never padded (converted Hugging Face models, vocab_multiple=1; model.json of
    older runs) keep every id live."""
    cfg = dataclasses.replace(_finalized("gpt"), real_vocab_size=0)
    model = build(cfg)
    params = values(model.init(jax.random.key(0), TOKENS)["params"])
    p = jax.nn.softmax(model.apply({"params": params}, TOKENS), axis=-1)
    assert float(p[..., REAL:].sum(-1).min()) > 0.01


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_sampling_never_emits_a_padded_id(name):
    """At temperature 1 an untrained model sampled ~20% of its tokens from the padding before."""
    cfg = _finalized(name)
    model = build(cfg)
    params = values(model.init(jax.random.key(0), TOKENS)["params"])
    out = np.asarray(generate(model, params, TOKENS[:, :4], max_new_tokens=12, temperature=1.0,
                              rng=jax.random.key(1)))
    assert out.max() < REAL
