"""LSTM: a float64 NumPy reference, segment resets and padding, causality, the generation
protocol (prefill + extend = score = forward), cost, config errors, sharded steps, and runs
through the runner (checkpoint, resume, per-position eval loss, a (2, 2, 2) mesh)."""
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.blocks.embed import Embed
from llmjax.config import ConfigError
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.models.lstm import LSTM, LSTMConfig
from llmjax.models.registry import build
from llmjax.training.state import count_params
from tests.helpers import tiny_config, write_corpus

V, E, H, B, L = 64, 32, 48, 4, 24
CFG = LSTMConfig(vocab_size=V, num_layers=2, d_model=E, hidden=H, init_std=0.5)  # tied, projected
TOKENS = np.random.default_rng(0).integers(0, V, size=(B, L)).astype(np.int32)


def _init(cfg=CFG):
    model = build(cfg)
    return model, nn.unbox(model.init(jax.random.key(0), TOKENS))


@functools.partial(jax.jit, static_argnums=0,
                   static_argnames=("deterministic", "method", "mutable", "max_new_tokens"))
def _apply(model, *args, **kw):
    """Jitted apply, cached per (hashable) model: eager scans are slow."""
    return model.apply(*args, **kw)


def _reference(params, cfg, tokens):
    """The stacked LSTM in float64 NumPy: gates i, f, g, o from [x_t, h_{t-1}], zero start."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    x = p["embed"]["embedding"][tokens]
    for i in range(cfg.num_layers):
        cell = p[f"layers_{i}"]["scan"]["cell"]
        w_in = np.concatenate([cell[f"i{g}"]["kernel"] for g in "ifgo"], axis=1)
        w_h = np.concatenate([cell[f"h{g}"]["kernel"] for g in "ifgo"], axis=1)
        bias = np.concatenate([cell[f"h{g}"]["bias"] for g in "ifgo"])
        c = h = np.zeros((tokens.shape[0], cfg.width))
        out = []
        for t in range(tokens.shape[1]):
            gi, gf, gg, go = np.split(x[:, t] @ w_in + h @ w_h + bias, 4, axis=1)
            c = sig(gf) * c + sig(gi) * np.tanh(gg)
            h = sig(go) * np.tanh(c)
            out.append(h)
        x = np.stack(out, axis=1)
    if not cfg.tie_embeddings:
        return x @ p["head"]["kernel"]
    if cfg.projects:
        x = x @ p["project"]["kernel"]
    return x @ p["embed"]["embedding"].T


@pytest.mark.parametrize("tie", [True, False])
def test_matches_float64_numpy_reference(tie):
    cfg = dataclasses.replace(CFG, tie_embeddings=tie)
    model, v = _init(cfg)
    assert ("project" in v["params"]) == tie and ("head" in v["params"]) == (not tie)
    logits = _apply(model, v, TOKENS)
    assert logits.shape == (B, L, V) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _reference(v["params"], cfg, TOKENS), atol=1e-5)


def test_the_forget_gate_starts_open():
    """Forget bias 1 at init (0 elsewhere): with 0 the state halves every step and a sequence head
    on the last state learned nothing on the classify task in 400 steps."""
    _, v = _init()
    cell = v["params"]["layers_0"]["scan"]["cell"]
    np.testing.assert_array_equal(cell["hf"]["bias"], np.ones(H))
    for gate in "igo":
        np.testing.assert_array_equal(cell[f"h{gate}"]["bias"], np.zeros(H))
    _, v0 = _init(dataclasses.replace(CFG, forget_bias=0.0))
    np.testing.assert_array_equal(v0["params"]["layers_1"]["scan"]["cell"]["hf"]["bias"], np.zeros(H))


def test_bfloat16_compute_float32_params_and_state():
    model, v = _init(dataclasses.replace(CFG, dtype="bfloat16"))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
    logits = _apply(model, v, TOKENS)
    assert logits.dtype == jnp.float32
    cache = _apply(model, v, TOKENS, np.ones_like(TOKENS), max_new_tokens=1, method="prefill",
                   mutable=("cache",))[1]["cache"]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(cache))
    np.testing.assert_allclose(logits, _apply(build(CFG), v, TOKENS), atol=0.15)


def test_logical_axis_names():
    specs = nn.get_partition_spec(build(CFG).init(jax.random.key(0), TOKENS))["params"]
    P = jax.sharding.PartitionSpec
    cell = specs["layers_1"]["scan"]["cell"]
    assert specs["embed"]["embedding"] == P("vocab", "embed")
    assert cell["ii"]["kernel"] == cell["hf"]["kernel"] == P("embed", "rnn_hidden")
    assert cell["ho"]["bias"] == P("rnn_hidden")
    assert specs["project"]["kernel"] == P("rnn_hidden", "embed")


def test_dropout_only_when_not_deterministic():
    model, v = _init(dataclasses.replace(CFG, dropout=0.3))
    a = _apply(model, v, TOKENS)
    b = _apply(model, v, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(1)})
    c = _apply(model, v, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(a, _apply(model, v, TOKENS, deterministic=True))
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_packed_documents_match_separate():
    """Three documents in one row (segment ids 1, 2, 3): each = that document run alone."""
    model, v = _init()
    bounds = (0, 7, 16, L)
    segments = np.zeros((1, L), np.int32)
    for k, (s, e) in enumerate(zip(bounds, bounds[1:])):
        segments[0, s:e] = k + 1
    packed = _apply(model, v, TOKENS[:1], segment_ids=segments)[0]
    for s, e in zip(bounds, bounds[1:]):
        np.testing.assert_allclose(packed[s:e], _apply(model, v, TOKENS[:1, s:e])[0], atol=1e-5)
    assert not np.allclose(packed[7:], _apply(model, v, TOKENS[:1])[0, 7:], atol=1e-3)  # resets matter


def test_left_padding_leaves_the_state_untouched():
    """Rows padded on the left (segment 0, any token there): each real token sees only the real
    tokens before it, as if the padding were absent."""
    model, v = _init()
    pads = np.array([0, 3, 10, 23])
    segments = (np.arange(L)[None] >= pads[:, None]).astype(np.int32)
    out = _apply(model, v, TOKENS, segment_ids=segments)
    garbage = np.where(segments == 1, TOKENS, 5).astype(np.int32)
    np.testing.assert_allclose(_apply(model, v, garbage, segment_ids=segments), out, atol=1e-6)
    for b, pad in enumerate(pads):
        np.testing.assert_allclose(out[b, pad:], _apply(model, v, TOKENS[b:b + 1, pad:])[0], atol=1e-5)


def test_causal():
    """d logits[t] / d embedding(input s) is zero for every s > t and not for s <= t."""
    model, v = _init()
    t = 10

    def logits_at_t(delta_BxLxE):
        def add_delta(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            is_lookup = isinstance(context.module, Embed) and context.method_name == "__call__"
            return out + delta_BxLxE if is_lookup else out
        with nn.intercept_methods(add_delta):
            return jnp.sum(model.apply(v, TOKENS)[:, t])

    grad = jax.grad(logits_at_t)(jnp.zeros((B, L, E)))
    per_position = np.abs(np.asarray(grad)).sum(axis=(0, 2))
    assert np.all(per_position[t + 1:] == 0) and np.all(per_position[:t + 1] > 0)


def test_prefill_extend_equal_score_and_each_row_alone():
    """Left-padded prompts of lengths 5, 12, 2, 9: prefill then extend token by token gives the
    logits of score (one forward), and each row those of the row alone, unpadded."""
    model, v = _init()
    lengths, P, N = np.array([5, 12, 2, 9]), 12, 7
    rng = np.random.default_rng(1)
    mask = (np.arange(P)[None] >= (P - lengths)[:, None]).astype(np.int32)
    prompt = np.where(mask == 1, rng.integers(0, V, (B, P)), 0).astype(np.int32)
    cont = rng.integers(0, V, (B, N)).astype(np.int32)

    shapes = jax.eval_shape(functools.partial(model.init, method="prefill", max_new_tokens=N),
                            jax.random.key(0), prompt, mask)
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])
    assert jax.tree.map(jnp.shape, cache) == {f"layers_{i}": {"c": (B, H), "h": (B, H)} for i in range(2)}
    first, mutated = _apply(model, {**v, "cache": cache}, prompt, mask, max_new_tokens=N,
                            method="prefill", mutable=("cache",))
    stepped = [first]
    for i in range(N):
        logits, mutated = _apply(model, {**v, **mutated}, cont[:, i], method="extend", mutable=("cache",))
        stepped.append(logits)
    scored = _apply(model, v, prompt, mask, cont, method="score")
    assert scored.shape == (B, N + 1, V)
    np.testing.assert_allclose(np.stack(stepped, axis=1), scored, atol=1e-5)
    for b, n in enumerate(lengths):
        alone = _apply(model, v, np.concatenate([prompt[b, P - n:], cont[b]])[None])[0]
        np.testing.assert_allclose(scored[b], alone[n - 1:], atol=1e-5)


def test_generate_runs_on_the_recurrent_state():
    """llmjax.generation drives the LSTM through the protocol: sampling on the cached state gives
    the tokens of recomputing every step, and a ragged batch what each prompt gives alone."""
    from llmjax.generation.decode import generate

    model, v = _init()
    prompts = [[5, 9, 2], [7, 1, 3, 3, 8, 12], [33]]
    kw = dict(max_new_tokens=8, rng=jax.random.key(2), temperature=1.0, top_k=10)
    cached = generate(model, v["params"], prompts, **kw)
    assert len(np.unique(cached)) > 4
    np.testing.assert_array_equal(generate(model, v["params"], prompts, use_cache=False, **kw), cached)
    greedy = generate(model, v["params"], prompts, max_new_tokens=8, rng=jax.random.key(0), temperature=0.0)
    for p, row in zip(prompts, greedy):
        np.testing.assert_array_equal(
            generate(model, v["params"], [p], max_new_tokens=8, rng=jax.random.key(0), temperature=0.0)[0], row)


def test_matmul_params_and_flops_by_hand():
    cfg = dataclasses.replace(CFG, num_layers=3)  # E=32, H=48, V=64, tied through a projection
    layers = 4 * (32 + 48) * 48 + 2 * 4 * (48 + 48) * 48
    head = 48 * 32 + 32 * 64
    assert cfg.matmul_params() == layers + head == 55_808
    assert cfg.flops_per_token(1) == cfg.flops_per_token(4096) == 6 * 55_808
    # every parameter is a matmul's, but the biases (4 gates x H per layer)
    model = build(cfg)
    params = jax.eval_shape(model.init, jax.random.key(0), TOKENS)["params"]
    assert count_params(params) == cfg.matmul_params() + 3 * 4 * 48
    untied = dataclasses.replace(CFG, tie_embeddings=False, hidden=0)  # H = E = 32
    assert untied.matmul_params() == 4 * 64 * 32 + 4 * 64 * 32 + 32 * 64


@pytest.mark.parametrize("key, value, message", [
    ("model__hidden", -1, "config.model.hidden=-1: must be zero or more"),
    ("model__dropout", 1.0, r"config.model.dropout=1.0: must be in \[0, 1\)"),
    ("model__num_heads", 4, "config.model.num_heads=4: unknown key"),
    ("mesh__fsdp", 8, "config.mesh.fsdp=8: must divide config.model.hidden=36"),
])
def test_config_errors_are_one_line(key, value, message):
    with pytest.raises(ConfigError, match=message) as e:
        resolve(tiny_config("stdlib", model="lstm", **{"model__hidden": 36, key: value}), num_devices=8)
    assert "\n" not in str(e.value)


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_runner_trains_checkpoints_resumes_and_writes_per_position_loss(tmp_path):
    spec = write_corpus(tmp_path / "corpus", num_files=48, max_chars=100)  # short documents: EOS in rows
    run = resolve(tiny_config(spec, model="lstm", model__dropout=0.1, data__document_mask=True), num_devices=8)
    a, b = tmp_path / "a", tmp_path / "b"
    out_a = train_and_evaluate(run, str(a), log=lambda _: None)
    assert sorted(os.listdir(a / "checkpoints"))[:2] == ["12", "6"]
    b.mkdir()
    for name in ("tokenizer", "data"):
        shutil.copytree(a / name, b / name)
    shutil.copytree(a / "checkpoints" / "6", b / "checkpoints" / "6")
    msgs = []
    out_b = train_and_evaluate(run, str(b), log=msgs.append)
    assert any("resumed from step 6" in m for m in msgs)
    la = {(r["step"], r["split"]): r["loss"] for r in _rows(a)}
    lb = {(r["step"], r["split"]): r["loss"] for r in _rows(b)}
    assert (12, "eval") in lb and all(lb[k] == la[k] for k in lb)  # bit-identical on CPU
    train = [r["loss"] for r in _rows(a) if r["split"] == "train"]
    assert out_a["loss"] == out_b["loss"] and train[-1] < train[0]

    loss = json.loads((a / "eval" / "per_position_loss.json").read_text())
    tokens = json.loads((a / "eval" / "per_position_tokens.json").read_text())
    assert loss["step"] == tokens["step"] == 12 and len(loss["per_position_loss"]) == 32
    # under document_mask positions restart per document: the weights are not uniform
    w = np.asarray(tokens["per_position_tokens"])
    final = [r for r in _rows(a) if r["split"] == "eval"][-1]
    assert w[0] > w[-1] and np.sum(w) == final["tokens"]
    per = np.array([x if x is not None else 0.0 for x in loss["per_position_loss"]])
    np.testing.assert_allclose(np.sum(per * w) / np.sum(w), final["loss"], rtol=1e-5)


_ONE_DEVICE_RUN = """
import sys
from llmjax.experiment import resolve, train_and_evaluate
from tests.helpers import tiny_config
train_and_evaluate(resolve(tiny_config(sys.argv[1], model="lstm"), num_devices=1), sys.argv[2],
                   log=lambda _: None)
"""


@pytest.mark.slow
def test_runner_on_a_2x2x2_mesh_matches_one_device(tmp_path):
    """The whole run on data 2 x fsdp 2 x tensor 2 of 8 host devices logs the losses of the
    same run on 1 device (a subprocess: this process already has 8)."""
    spec = write_corpus(tmp_path / "corpus")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", _ONE_DEVICE_RUN, spec, str(tmp_path / "one")], check=True,
                   env=env, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    run = resolve(tiny_config(spec, model="lstm", mesh__data=2, mesh__fsdp=2, mesh__tensor=2), num_devices=8)
    train_and_evaluate(run, str(tmp_path / "mesh"), log=lambda _: None)
    one = {(r["step"], r["split"]): r["loss"] for r in _rows(tmp_path / "one")}
    mesh = {(r["step"], r["split"]): r["loss"] for r in _rows(tmp_path / "mesh")}
    assert set(one) == set(mesh) and len(one) > 12
    for k in one:
        np.testing.assert_allclose(mesh[k], one[k], rtol=1e-4, err_msg=str(k))


def test_registered_and_builds():
    from llmjax.models.registry import names

    assert "lstm" in names() and isinstance(build(CFG), LSTM)
    assert LSTMConfig.inputs == ("segment_ids",) and LSTMConfig.tasks == ("lm",)
