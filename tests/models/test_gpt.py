"""GPT: shapes, logical axis names, remat equivalence, dtypes, dropout, packing, size and cost,
the sequence-classifier head."""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.models.gpt import GPT, GPTConfig
from llmjax.models.registry import build, names, register
from llmjax.training.state import count_params as num_params

CFG = GPTConfig(vocab_size=32, num_layers=2, d_model=16, num_heads=4, num_kv_heads=2, mlp_dim=32,
                  max_len=16, init_std=0.1)
TOKENS = np.random.default_rng(0).integers(0, 32, size=(2, 8)).astype(np.int32)


def _init(cfg=CFG, tokens=TOKENS):
    model = build(cfg)
    return model, model.init(jax.random.key(0), tokens)


@functools.partial(jax.jit, static_argnums=0, static_argnames=("deterministic",))
def _apply(model, *args, **kw):
    """Jitted apply, cached per (hashable) model: eager dispatch makes small-model tests slow."""
    return model.apply(*args, **kw)


def _loss(params, model, tokens=TOKENS, **kw):
    logits = model.apply({"params": params}, tokens[:, :-1], **kw)
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()


def test_shapes_and_float32_logits():
    # learned, rope and alibi run in the packing test below and in the decoding tests.
    model, v = _init(dataclasses.replace(CFG, position="sinusoidal"))
    logits = _apply(model, v, TOKENS)
    assert logits.shape == (2, 8, 32) and logits.dtype == jnp.float32
    assert "pos_embed" not in v["params"] and "pos_embed" in _init()[1]["params"]


def test_logical_axis_names():
    _, variables = _init(dataclasses.replace(CFG, tie_embeddings=False, ffn="swiglu"))
    specs = nn.get_partition_spec(variables)["params"]
    P = jax.sharding.PartitionSpec
    assert specs["embed"]["embedding"] == P("vocab", "embed")
    assert specs["pos_embed"]["embedding"] == P("length", "embed")
    assert specs["head"]["kernel"] == P("embed", "vocab")
    attn = specs["layer_0"]["attn"]
    assert attn["query"]["kernel"] == P("embed", "heads", "head_dim")
    assert attn["key"]["kernel"] == P("embed", "kv_heads", "head_dim")
    assert attn["out"]["kernel"] == P("heads", "head_dim", "embed")
    ffn = specs["layer_0"]["ffn"]
    assert ffn["w1"]["kernel"] == ffn["w3"]["kernel"] == P("embed", "mlp")
    assert ffn["w2"]["kernel"] == P("mlp", "embed")
    assert specs["final_norm"]["scale"] == P("norm")


def test_remat_policies_identical_loss_and_grads():
    results = []
    for remat in ("none", "full", "dots_saveable"):
        model, v = _init(dataclasses.replace(CFG, remat=remat))
        results.append(jax.jit(jax.value_and_grad(_loss), static_argnums=1)(v["params"], model))
    flat = [jax.tree_util.tree_leaves(nn.unbox(r)) for r in results]
    for other in flat[1:]:
        for a, b in zip(flat[0], other):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)


def test_bfloat16_compute_float32_params():
    model, v = _init(dataclasses.replace(CFG, dtype="bfloat16", position="rope"))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(nn.unbox(v)))
    logits = _apply(model, v, TOKENS)
    assert logits.dtype == jnp.float32
    ref = _apply(build(dataclasses.replace(model.cfg, dtype="float32")), v, TOKENS)
    np.testing.assert_allclose(logits, ref, atol=0.05)


def test_dropout_only_when_not_deterministic():
    model, v = _init(dataclasses.replace(CFG, dropout=0.3, attention_dropout=0.3))
    a = _apply(model, v, TOKENS)
    np.testing.assert_array_equal(a, _apply(model, v, TOKENS, deterministic=True))
    b = _apply(model, v, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(1)})
    c = _apply(model, v, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_tied_and_untied_heads():
    model, v = _init()
    assert "head" not in v["params"]
    untied, vu = _init(dataclasses.replace(CFG, tie_embeddings=False))
    assert vu["params"]["head"]["kernel"].value.shape == (16, 32)
    assert num_params(vu) == num_params(v) + 16 * 32
    assert _apply(untied, vu, TOKENS).shape == (2, 8, 32)
    grads = jax.jit(jax.grad(lambda p: _loss(p, untied)))(vu["params"])
    assert np.all(np.isfinite(grads["head"]["kernel"].value)) and np.any(grads["head"]["kernel"].value != 0)


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
def test_packed_documents_match_separate(position):
    """Two documents packed in one row (positions restart, segments mask) = each run alone."""
    cfg = dataclasses.replace(CFG, position=position, norm_position="post", norm="rmsnorm")
    model, v = _init(cfg)
    doc_a, doc_b = TOKENS[0, :5], TOKENS[1, :3]
    packed = np.concatenate([doc_a, doc_b])[None]
    positions = np.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    segments = np.array([[1, 1, 1, 1, 1, 2, 2, 2]])
    out = _apply(model, v, packed, positions=positions, segment_ids=segments)
    np.testing.assert_allclose(out[0, :5], _apply(model, v, doc_a[None])[0], atol=1e-5)
    np.testing.assert_allclose(out[0, 5:], _apply(model, v, doc_b[None])[0], atol=1e-5)


def test_gpt2_124m_size_and_flops():
    cfg = GPTConfig(vocab_size=50304, num_layers=12, d_model=768, num_heads=12, num_kv_heads=12,
                      mlp_dim=3072, max_len=1024, tie_embeddings=True)
    flops = cfg.flops_per_token(1024)
    assert 8.4e8 < flops < 8.6e8
    shapes = jax.eval_shape(GPT(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    assert 123e6 < num_params(shapes["params"]) < 125.5e6


def test_registry():
    assert "gpt" in names() and isinstance(build(CFG), GPT)
    with pytest.raises(ConfigError, match="config.model.name='nope': unknown model family; registered: .*gpt"):
        build(dataclasses.replace(CFG, name="nope"))
    with pytest.raises(ValueError, match="already registered"):
        register("gpt", GPTConfig)(lambda cfg: None)


def test_init_and_grads_under_mesh_and_rules():
    """Logical names meet a real mesh: every constraint must match its array's rank."""
    from llmjax import sharding as sh

    mesh = sh.make_mesh((1, 1, 1), jax.devices()[:1])
    model = build(dataclasses.replace(CFG, ffn="swiglu", tie_embeddings=False, remat="full"))
    with sh.use_mesh(mesh):
        v = jax.jit(model.init)(jax.random.key(0), TOKENS)
        loss, grads = jax.jit(jax.value_and_grad(_loss), static_argnums=1)(v["params"], model)
    assert np.isfinite(float(loss))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(v["params"])


def _stack_layers(params, num_layers):
    """Unrolled parameters (layer_0, layer_1, ...) -> the scanned form (layers, leading axis)."""
    params = dict(params)
    layers = [params.pop(f"layer_{i}") for i in range(num_layers)]
    params["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return params


@pytest.mark.parametrize("remat", [pytest.param("none", marks=pytest.mark.slow), "full"])  # none: ~35 s
def test_scanned_layers_equal_unrolled(remat):
    """scan_layers=True runs the same function on the stacked parameters, with and without
    remat, and decodes on its stacked KV cache like the unrolled model."""
    from llmjax.generation.decode import generate

    cfg = dataclasses.replace(CFG, position="rope", remat=remat)
    model, v = _init(cfg)
    params = nn.unbox(v["params"])
    scanned = build(dataclasses.replace(cfg, scan_layers=True))
    sv = nn.unbox(scanned.init(jax.random.key(0), TOKENS)["params"])
    assert jax.tree.map(jnp.shape, _stack_layers(params, cfg.num_layers)) == jax.tree.map(jnp.shape, sv)
    stacked = _stack_layers(params, cfg.num_layers)
    np.testing.assert_allclose(_apply(scanned, {"params": stacked}, TOKENS),
                               _apply(model, {"params": params}, TOKENS), atol=1e-5)
    grad = jax.jit(jax.grad(_loss), static_argnums=1)
    g_unrolled, g_scanned = grad(params, model), grad(stacked, scanned)
    for a, b in zip(jax.tree.leaves(_stack_layers(g_unrolled, cfg.num_layers)), jax.tree.leaves(g_scanned)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    prompt = TOKENS[:, :3]
    kw = dict(max_new_tokens=5, rng=jax.random.key(0), temperature=0.0)
    np.testing.assert_array_equal(generate(scanned, stacked, prompt, **kw), generate(model, params, prompt, **kw))


@pytest.mark.parametrize("tie", [True, False])
def test_classifier_reads_each_rows_last_real_token(tie):
    """Ragged right padding: each row's class logits = that row run alone, unpadded (whose last
    token is its last real one). Reading position L-1 instead would see a padding row."""
    cfg = dataclasses.replace(CFG, head="sequence", num_labels=3, tie_embeddings=tie)
    model, v = _init(cfg)
    assert "classifier" in v["params"] and "head" not in v["params"] and "embed" in v["params"]
    lengths = (8, 5, 2)
    tokens = np.random.default_rng(1).integers(1, 32, size=(3, 8)).astype(np.int32)
    mask = (np.arange(8)[None] < np.array(lengths)[:, None]).astype(np.int32)
    logits = _apply(model, v, tokens, attention_mask=mask)
    assert logits.shape == (3, 3) and logits.dtype == jnp.float32
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(logits[b], _apply(model, v, tokens[b:b + 1, :n])[0], atol=1e-5, rtol=1e-5)
    # the padding's own contents do not matter
    garbage = np.where(mask == 1, tokens, 7)
    np.testing.assert_allclose(_apply(model, v, garbage, attention_mask=mask), logits, atol=1e-6)
    unmasked = _apply(model, v, tokens)  # no mask: every row ends at position L-1
    assert not np.allclose(unmasked[1:], logits[1:], atol=1e-3)
    np.testing.assert_allclose(unmasked[0], logits[0], atol=1e-5)
    with pytest.raises(ValueError, match="attention_mask and segment_ids"):
        _apply(model, v, tokens, attention_mask=mask, segment_ids=mask)


def test_attention_mask_is_the_padding_form_of_segment_ids():
    model, v = _init()
    mask = np.ones_like(TOKENS)
    mask[1, 5:] = 0
    out = _apply(model, v, TOKENS, attention_mask=mask)
    np.testing.assert_array_equal(out, _apply(model, v, TOKENS, segment_ids=mask))
    np.testing.assert_allclose(out[1, :5], _apply(model, v, TOKENS[1:, :5])[0], atol=1e-5)
