"""Task heads (llmjax.models.heads) on every family that serves them: shapes, parameter names
(warm starts by path), what each head reads, and the resolve-time pairing of tasks and families.

Shape key: B batch, L length, E width, K outputs.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.experiment import base_config, resolve
from llmjax.models import heads
from llmjax.models.bert import BertConfig
from llmjax.models.gpt import GPTConfig
from llmjax.models.lstm import LSTMConfig
from llmjax.models.registry import build, config_from_dict, config_to_dict
from llmjax.training.tree_paths import flat_paths

B, L, V, K = 2, 7, 64, 5
SMALL = dict(num_layers=1, d_model=16, num_heads=2, mlp_dim=32)
FAMILIES = {
    "gpt": GPTConfig(**SMALL, dropout=0.0),
    "bert": BertConfig(**SMALL, dropout=0.0, attention_dropout=0.0, max_len=16),
    "lstm": LSTMConfig(num_layers=1, d_model=16),
}
TOKENS = np.random.default_rng(0).integers(1, V, (B, L)).astype(np.int32)


def _cfg(family, head="", num_labels=0):
    cfg = FAMILIES[family].finalize(V, L, "cpu", "float32")
    return dataclasses.replace(cfg, head=head, num_labels=num_labels)


def _init(cfg, tokens=TOKENS, **kw):
    model = build(cfg)
    return model, nn.unbox(model.init(jax.random.key(0), tokens, **kw)["params"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("head, shape", [("sequence", (B, K)), ("token", (B, L, K)), ("span", (B, L, 2))])
def test_each_family_serves_each_head_and_only_the_head_is_new(family, head, shape):
    """The head's logits have its shape, and against the family's own tree the only new
    parameters are the head's own top-level dense layer: a warm start restores the rest."""
    labels = 0 if head == "span" else K
    model, params = _init(_cfg(family, head, labels))
    out = model.apply({"params": params}, TOKENS, attention_mask=np.ones((B, L), np.int32))
    assert out.shape == shape and out.dtype == jnp.float32
    _, own = _init(_cfg(family))
    new = {p: v.shape for p, v in flat_paths(params).items() if p not in flat_paths(own)}
    assert new == {f"{heads.HEAD_PARAMS[head]}/kernel": (16, heads.num_outputs(head, labels)),
                   f"{heads.HEAD_PARAMS[head]}/bias": (heads.num_outputs(head, labels),)}
    shared = set(flat_paths(params)) & set(flat_paths(own))
    assert all(flat_paths(params)[p].shape == flat_paths(own)[p].shape for p in shared)


def test_bert_token_and_span_heads_skip_the_pooler():
    """Hugging Face's token and QA models have no pooler: neither do llmjax's."""
    for head in ("token", "span"):
        _, params = _init(_cfg("bert", head, 0 if head == "span" else K))
        assert "pooler" not in params
    assert "pooler" in _init(_cfg("bert", "sequence", K))[1]


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_causal_token_heads_see_only_the_past(family):
    """A causal family's token logits at t do not change when a later token changes."""
    model, params = _init(_cfg(family, "token", K))
    changed = TOKENS.copy()
    changed[:, 4] = (changed[:, 4] % (V - 1)) + 1
    a, b = (np.asarray(model.apply({"params": params}, t)) for t in (TOKENS, changed))
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_sequence_head_reads_the_last_real_token(family):
    """A right-padded row classifies as the same row alone, unpadded (GPT: the last real state;
    the LSTM: the mean of the real states)."""
    model, params = _init(_cfg(family, "sequence", K))
    n = 4
    mask = np.zeros((B, L), np.int32)
    mask[:, :n] = 1
    padded = np.where(mask == 1, TOKENS, 0)
    got = model.apply({"params": params}, padded, attention_mask=mask)
    alone = model.apply({"params": params}, TOKENS[:, :n])
    np.testing.assert_allclose(np.asarray(got), np.asarray(alone), atol=1e-5)


def test_lstm_sequence_head_pools_as_model_pool_says():
    """pool=last reads the state GPT's head would; pool=mean (the default) every real state:
    the classifier sees the first token's state directly, not through the recurrence."""
    model, params = _init(_cfg("lstm", "sequence", K))
    last = build(dataclasses.replace(_cfg("lstm", "sequence", K), pool="last"))
    mean_out, last_out = (np.asarray(m.apply({"params": params}, TOKENS)) for m in (model, last))
    assert not np.allclose(mean_out, last_out)  # heads.mean_real's arithmetic: the float64 test below


def test_token_and_span_heads_are_a_dense_layer_on_every_position_float64():
    """heads.apply against a float64 numpy reference: x W + b per position (dropout off), and
    last_real picks the last mask-1 position (a row of padding: position 0)."""
    rng = np.random.default_rng(1)
    x_BxLxE = rng.normal(size=(B, L, 16)).astype(np.float32)
    for head, labels in (("token", K), ("span", 0)):
        dense = heads.projection(head, labels, 0.5, "float32")
        p = nn.unbox(dense.init(jax.random.key(1), x_BxLxE)["params"])
        p = jax.tree.map(lambda v: v + 0.1, p)  # a nonzero bias
        out = heads.apply(head, lambda x: dense.apply({"params": p}, x), x_BxLxE, None,
                          lambda x, deterministic: x, True)
        ref = x_BxLxE.astype(np.float64) @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)
        np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
    mask = np.array([[1, 1, 1, 0, 0, 0, 0], [0] * L], np.int32)
    np.testing.assert_array_equal(np.asarray(heads.last_real(x_BxLxE, mask)), x_BxLxE[[0, 1], [2, 0]])
    mean = np.asarray(heads.mean_real(x_BxLxE, mask), np.float64)
    np.testing.assert_allclose(mean[0], x_BxLxE[0, :3].astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mean[1], np.zeros(16))  # padding only


def test_head_fields_a_task_sets_wrong_fail_at_build():
    for head, labels, match in (("token", 0, "needs num_labels >= 1"), ("", 3, "only read by"),
                                ("span", 2, "only read by"), ("tagger", 3, "not served")):
        with pytest.raises(ValueError, match=match):
            build(_cfg("gpt", head, labels))
    encdec = resolve(base_config("encdec", "seq2seq")).model
    with pytest.raises(ValueError, match="not served"):
        build(dataclasses.replace(encdec.finalize(V, L, "cpu", "float32"), head="token", num_labels=3))


def test_resolve_pairs_tasks_with_the_heads_a_family_serves():
    """classify needs a sequence head: the LSTM serves it now, the encoder-decoder does not (one
    line naming what it does serve); a family's own-head tasks stay its own."""
    assert resolve(base_config("lstm", "classify")).model.name == "lstm"
    with pytest.raises(ConfigError, match=r"config.task.name='classify': .*'encdec' is trained on the "
                                          r"tasks seq2seq \(it needs a sequence head\)") as err:
        resolve(base_config("encdec", "classify"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="'lstm' is trained on the tasks lm, classify"):
        resolve(base_config("lstm", "mlm"))


def test_a_model_json_from_before_named_heads_reads_as_a_sequence_classifier():
    cfg = _cfg("bert", "sequence", 3)
    old = {k: v for k, v in config_to_dict(cfg).items() if k != "head"}
    assert config_from_dict(old) == cfg
    assert config_from_dict(config_to_dict(_cfg("bert"))).head == ""
