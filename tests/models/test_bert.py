"""BERT: heads and shapes, padding invariance, token types, masked gather, pre/post LN, scan,
a float64 numpy parity reference, sharded init on 8 devices, config arithmetic.

Shape key: B batch, L length, P masked positions, E width, V vocabulary, C classes.
"""
import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from llmjax import sharding as sh
from llmjax.config import ConfigError, DataConfig
from llmjax.models.bert import BERT, BertConfig
from llmjax.models.registry import build, names

CFG = BertConfig(vocab_size=64, num_layers=2, d_model=16, num_heads=4, mlp_dim=32, max_len=16,
                 init_std=0.2)
TOKENS = np.random.default_rng(0).integers(1, 64, size=(2, 8)).astype(np.int32)
HEADS = ("mlm_head", "nsp_head", "classifier")


@functools.partial(jax.jit, static_argnums=0, static_argnames=("deterministic",))
def _apply(model, *args, **kw):
    """Jitted apply, cached per (hashable) model: eager dispatch makes small-model tests slow."""
    return model.apply(*args, **kw)


def _init(cfg=CFG, tokens=TOKENS):
    model = build(cfg)
    return model, nn.unbox(jax.jit(model.init)(jax.random.key(0), tokens)["params"])


def test_head_shapes_and_same_encoder_in_both_modes():
    model, p = _init()
    mlm, nsp = _apply(model, {"params": p}, TOKENS)
    assert mlm.shape == (2, 8, 64) and nsp.shape == (2, 2)
    assert mlm.dtype == nsp.dtype == jnp.float32
    mlm_p, _ = _apply(model, {"params": p}, TOKENS, masked_positions=np.array([[0, 3, 7], [1, 1, 2]]))
    assert mlm_p.shape == (2, 3, 64)
    clf, pc = _init(dataclasses.replace(CFG, head="sequence", num_labels=3))
    logits = _apply(clf, {"params": pc}, TOKENS)
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    assert set(p) - set(pc) == {"mlm_head", "nsp_head"} and set(pc) - set(p) == {"classifier"}
    encoder = lambda t: {k: v for k, v in t.items() if k not in HEADS}
    assert jax.tree.map(jnp.shape, encoder(p)) == jax.tree.map(jnp.shape, encoder(pc))
    # warm start by path: the pretrained encoder + a fresh classifier run
    warm = {**encoder(p), "classifier": pc["classifier"]}
    assert np.all(np.isfinite(_apply(clf, {"params": warm}, TOKENS)))
    # the classifier's dropout acts on the pooled output only when not deterministic
    a, b = (_apply(clf, {"params": pc}, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(i)})
            for i in (1, 2))
    assert not np.allclose(a, b) and not np.allclose(a, logits)


def _mesh_axes(spec):
    return [a for dim in spec for a in ((dim,) if isinstance(dim, str) else (dim or ()))]


@pytest.mark.parametrize("mode", ["pretrain", "classifier", "scanned"])
def test_every_parameter_has_logical_axes_and_no_mesh_axis_twice(mode):
    cfg = {"pretrain": CFG, "classifier": dataclasses.replace(CFG, head="sequence", num_labels=3),
           "scanned": dataclasses.replace(CFG, scan_layers=True)}[mode]
    boxed = jax.eval_shape(build(cfg).init, jax.random.key(0), TOKENS)["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(x, nn.Partitioned) for x in leaves)
    logical = nn.get_partition_spec(boxed)
    mesh_specs = nn.logical_to_mesh(logical, sh.RULES)
    for spec in jax.tree.leaves(mesh_specs, is_leaf=lambda x: isinstance(x, P)):
        axes = _mesh_axes(spec)
        assert len(axes) == len(set(axes)), spec
    assert logical["pooler"]["kernel"] == P("embed", "embed_out")
    assert logical["embeddings"]["token_type"]["embedding"] == P("type_vocab", "embed")


def test_padding_does_not_change_real_positions():
    """Ragged rows padded on the right (attention_mask 0) = each row run alone, unpadded; padded
    query rows stay finite (they see no key at all). (Relative positions with a mask: the
    scan test runs rope.)"""
    cfg = CFG
    clf_cfg = dataclasses.replace(cfg, head="sequence", num_labels=3)
    model, p = _init(cfg)
    clf, pc = _init(clf_cfg)
    lengths = (6, 4)
    tokens = np.zeros((2, 9), np.int32)
    types = np.zeros((2, 9), np.int32)
    mask = np.zeros((2, 9), np.int32)
    for b, n in enumerate(lengths):
        tokens[b, :n] = TOKENS[b, :n]
        types[b, n // 2:n] = 1
        mask[b, :n] = 1
    mlm, nsp = _apply(model, {"params": p}, tokens, token_types=types, attention_mask=mask)
    logits = _apply(clf, {"params": pc}, tokens, token_types=types, attention_mask=mask)
    assert np.all(np.isfinite(mlm)) and np.all(np.isfinite(nsp)) and np.all(np.isfinite(logits))
    for b, n in enumerate(lengths):
        alone = {"token_types": types[b:b + 1, :n]}
        mlm_b, nsp_b = _apply(model, {"params": p}, tokens[b:b + 1, :n], **alone)
        np.testing.assert_allclose(mlm[b, :n], mlm_b[0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(nsp[b], nsp_b[0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(logits[b], _apply(clf, {"params": pc}, tokens[b:b + 1, :n], **alone)[0],
                                   atol=1e-5, rtol=1e-5)
    # without the mask the padding is attended and the real positions change (the test can fail)
    mlm_unmasked, _ = _apply(model, {"params": p}, tokens, token_types=types)
    assert not np.allclose(mlm_unmasked[1, :4], mlm[1, :4], atol=1e-3)


def test_token_types_change_the_outputs():
    model, p = _init()
    types = np.zeros_like(TOKENS)
    types[:, 4:] = 1
    mlm0, nsp0 = _apply(model, {"params": p}, TOKENS)
    mlm1, nsp1 = _apply(model, {"params": p}, TOKENS, token_types=types)
    assert not np.allclose(mlm0, mlm1, atol=1e-3) and not np.allclose(nsp0, nsp1, atol=1e-3)
    np.testing.assert_array_equal(_apply(model, {"params": p}, TOKENS, token_types=0 * types)[0], mlm0)


def test_masked_positions_gather_equals_full_logits():
    model, p = _init()
    masked = np.array([[0, 5, 5, 7], [2, 3, 1, 6]], np.int32)
    full, nsp = _apply(model, {"params": p}, TOKENS)
    part, nsp_p = _apply(model, {"params": p}, TOKENS, masked_positions=masked)
    np.testing.assert_allclose(part, np.take_along_axis(np.asarray(full), masked[..., None], axis=1),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(nsp, nsp_p)


def test_pre_and_post_norm_both_run():
    pre, pp = _init(dataclasses.replace(CFG, norm_position="pre"))
    post, po = _init()
    assert "final_norm" in pp and "final_norm" not in po
    out_pre, out_post = _apply(pre, {"params": pp}, TOKENS)[0], _apply(post, {"params": po}, TOKENS)[0]
    assert np.all(np.isfinite(out_pre)) and np.all(np.isfinite(out_post))
    assert not np.allclose(out_pre, out_post, atol=1e-3)


def _stack_layers(params, num_layers):
    params = dict(params)
    layers = [params.pop(f"layer_{i}") for i in range(num_layers)]
    params["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return params


# none is slow, as in test_gpt.py: scanned equals unrolled under remat "full" here, and remat
# changes no value (test_gpt.py's test_remat_policies_identical_loss_and_grads).
@pytest.mark.parametrize("remat", [pytest.param("none", marks=pytest.mark.slow), "full"])
def test_scanned_layers_equal_unrolled(remat):
    cfg = dataclasses.replace(CFG, remat=remat, position="rope")
    model, p = _init(cfg)
    scanned = build(dataclasses.replace(cfg, scan_layers=True))
    stacked = _stack_layers(p, cfg.num_layers)
    shapes = jax.eval_shape(scanned.init, jax.random.key(0), TOKENS)["params"]
    assert jax.tree.map(jnp.shape, nn.unbox(shapes)) == jax.tree.map(jnp.shape, stacked)
    mask = np.ones_like(TOKENS)
    mask[1, 5:] = 0
    for a, b in zip(_apply(scanned, {"params": stacked}, TOKENS, attention_mask=mask),
                    _apply(model, {"params": p}, TOKENS, attention_mask=mask)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- float64 parity reference


def _ln(x, p, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _reference(p, tokens, types, mask, eps=1e-12):
    """One BERT forward as Hugging Face computes it (BertModel + BertPreTrainingHeads /
    BertForSequenceClassification), float64. Padding masks keys only (HF's additive mask), so
    padded query rows differ from ours; only real positions are compared."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    e = p["embeddings"]
    L = tokens.shape[1]
    x = e["token"]["embedding"][tokens] + e["token_type"]["embedding"][types] + e["position"]["embedding"][:L]
    x = _ln(x, e["norm"], eps)
    for i in range(sum(k.startswith("layer_") for k in p)):
        lp = p[f"layer_{i}"]
        a = lp["attn"]
        q, k, v = (np.einsum("ble,ehd->blhd", x, a[n]["kernel"]) + a[n]["bias"] for n in ("query", "key", "value"))
        s = np.einsum("blhd,bshd->bhls", q, k) / math.sqrt(q.shape[-1])
        s = s + np.where(mask[:, None, None, :] == 1, 0.0, -1e9)
        w = np.exp(s - s.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
        ctx = np.einsum("bhls,bshd->blhd", w, v)
        x = _ln(x + np.einsum("blhd,hde->ble", ctx, a["out"]["kernel"]) + a["out"]["bias"], lp["attn_norm"], eps)
        f = lp["ffn"]
        h = _gelu(x @ f["w1"]["kernel"] + f["w1"]["bias"]) @ f["w2"]["kernel"] + f["w2"]["bias"]
        x = _ln(x + h, lp["ffn_norm"], eps)
    pooled = np.tanh(x[:, 0] @ p["pooler"]["kernel"] + p["pooler"]["bias"])
    out = {"hidden": x, "pooled": pooled}
    if "mlm_head" in p:
        m = p["mlm_head"]
        t = _ln(_gelu(x @ m["transform"]["kernel"] + m["transform"]["bias"]), m["norm"], eps)
        out["mlm"] = t @ e["token"]["embedding"].T + m["output_bias"]
        out["nsp"] = pooled @ p["nsp_head"]["kernel"] + p["nsp_head"]["bias"]
    if "classifier" in p:
        out["classifier"] = pooled @ p["classifier"]["kernel"] + p["classifier"]["bias"]
    return out


def _randomise(params, seed):
    """Every parameter random (norm scales around 1, biases nonzero); the embedding tables tiny,
    so the embedding LayerNorm sees variance ~1e-6 and its epsilon (1e-12, not 1e-5) matters.
    The MLM output bias is as tiny as the logits x E^T it is added to (which the tied tiny table
    makes ~1e-3), so it cannot hide an error in the head."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        keys = [getattr(k, "key", "") for k in path]
        if keys[-1] == "scale":
            return 1.0 + 0.2 * rng.normal(size=a.shape)
        if (keys[0] == "embeddings" and keys[-1] != "bias") or keys[-1] == "output_bias":
            return 1e-3 * rng.normal(size=a.shape)
        return 0.3 * rng.normal(size=a.shape)

    return jax.tree_util.tree_map_with_path(lambda path, a: jnp.asarray(draw(path, a), jnp.float32), params)


def test_parity_with_float64_reference():
    cfg = dataclasses.replace(CFG, num_layers=1)
    assert (cfg.norm_position, cfg.ffn, cfg.norm_epsilon, cfg.position) == ("post", "gelu_exact", 1e-12, "learned")
    tokens = np.random.default_rng(3).integers(1, 64, size=(2, 7)).astype(np.int32)
    types = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]], np.int32)
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2], np.int32)
    model, p = _init(cfg, tokens)
    p = _randomise(p, 0)
    mlm, nsp = _apply(model, {"params": p}, tokens, token_types=types, attention_mask=mask)
    ref = _reference(p, tokens, types, mask)
    real = mask.astype(bool)
    got, want = np.asarray(mlm, np.float64)[real], ref["mlm"][real]
    assert np.max(np.abs(got - want)) < 1e-4 * np.max(np.abs(want))  # the logits are ~1e-3
    np.testing.assert_allclose(nsp, ref["nsp"], rtol=2e-4, atol=2e-5)
    # the same check would catch LayerNorm eps 1e-5 (the embedding LN sees variance ~1e-6)
    assert np.max(np.abs(_reference(p, tokens, types, mask, eps=1e-5)["nsp"] - ref["nsp"])) > 1e-2

    clf, pc = _init(dataclasses.replace(cfg, head="sequence", num_labels=3), tokens)
    pc = {**{k: v for k, v in p.items() if k not in HEADS}, "classifier": _randomise(pc, 1)["classifier"]}
    logits = _apply(clf, {"params": pc}, tokens, token_types=types, attention_mask=mask)
    np.testing.assert_allclose(logits, _reference(pc, tokens, types, mask)["classifier"], rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- sharding, config


def test_sharded_init_on_eight_devices():
    """Init jitted straight into the rules' shardings on a (2, 2, 2) mesh; the forward there
    equals the single-device one."""
    assert len(jax.devices()) >= 8, "tests/conftest.py forces 8 host devices"
    cfg = dataclasses.replace(CFG, d_model=32, mlp_dim=64, num_heads=4)
    model = build(cfg)
    mesh = sh.make_mesh((2, 2, 2), jax.devices()[:8])
    with sh.use_mesh(mesh):
        boxed = jax.eval_shape(model.init, jax.random.key(0), TOKENS)
        shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, sh.RULES)
        v = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), TOKENS)
        params = v["params"]
        assert params["pooler"]["kernel"].value.sharding.spec == P("fsdp", None)  # see sharding.RULES
        assert params["embeddings"]["token"]["embedding"].value.sharding.spec == P("tensor", "fsdp")
        assert params["layer_0"]["attn"]["query"]["kernel"].value.addressable_shards[0].data.shape == (16, 2, 8)
        sharded = jax.jit(model.apply)(v, TOKENS)
    single = model.apply(jax.device_get(nn.unbox(v)), TOKENS)
    for a, b in zip(sharded, single):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_config_defaults_checks_and_registry():
    c = BertConfig()
    assert (c.name, c.norm_position, c.ffn, c.norm_epsilon, c.position, c.dropout, c.attention_dropout,
            c.max_len, c.type_vocab_size, c.num_labels) == ("bert", "post", "gelu_exact", 1e-12, "learned",
                                                            0.1, 0.1, 512, 2, 0)
    assert "bert" in names() and isinstance(build(CFG), BERT)
    f = c.finalize(30522, 128, "cpu", "bfloat16")
    assert (f.vocab_size, f.max_len, f.attention_backend, f.dtype, f.num_kv_heads) == (30528, 512, "xla", "bfloat16", 8)
    assert BertConfig(max_len=0).finalize(100, 128, "gpu", "float32").max_len == 128
    assert "MLM + NSP" in f.summary() and "3 labels" in dataclasses.replace(f, head="sequence", num_labels=3).summary()
    with pytest.raises(ConfigError, match="seq_len"):
        c.check_run(DataConfig(seq_len=1024), None)
    with pytest.raises(ConfigError, match="mesh.tensor"):
        c.check_run(DataConfig(seq_len=128), (1, 1, 3))
    for bad in ({"type_vocab_size": 0}, {"norm_epsilon": -1.0}, {"ffn": "gelu_tanh"}):
        with pytest.raises(ConfigError):
            dataclasses.replace(c, **bad).validate()


def test_flops_count_the_encoder_and_the_mlm_head():
    """BERT-base: matmul parameters counted from the real parameter tree (not the formula)."""
    cfg = BertConfig(num_layers=12, d_model=768, num_heads=12, mlp_dim=3072, vocab_size=30528)
    shapes = nn.unbox(jax.eval_shape(BERT(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    kernels = sum(math.prod(a.shape) for path, a in jax.tree_util.tree_flatten_with_path(shapes)[0]
                  if path[0].key.startswith("layer_") and path[-1].key == "kernel")
    assert kernels == cfg.matmul_params() == 12 * (4 * 768 ** 2 + 2 * 768 * 3072)
    assert cfg.flops_per_token(512) == 6 * kernels + 12 * 12 * 768 * 512
    t = shapes["mlm_head"]["transform"]["kernel"].shape
    assert cfg.mlm_head_flops() == 6 * (math.prod(t) + math.prod(shapes["embeddings"]["token"]["embedding"].shape))
