"""Schedules against their formulas, counted as the optimizer counts; decoupled weight decay
masked by what a parameter is; every optimizer trains a real sharded GPT."""
import functools
import inspect
import json.decoder

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from llmjax import sharding
from llmjax.config import OPTIMIZERS, SCHEDULES, OptimConfig
from llmjax.models.gpt import GPTConfig
from llmjax.models import registry
from llmjax.training import optim
from llmjax.training.state import abstract_state, create, init_fn, values


def _init_params(model, seq_len):
    """rng -> the model's boxed parameters (what a task's init_params gives)."""
    return lambda rng: model.init(rng, jnp.zeros((1, seq_len), jnp.int32), deterministic=True)["params"]

GPT = GPTConfig(vocab_size=512, num_layers=2, d_model=128, num_heads=4, num_kv_heads=4, mlp_dim=512,
                  max_len=64)


@pytest.fixture(scope="module")
def gpt_params():
    """A real GPT parameter tree, shifted by 1 so that zero-initialised biases are nonzero."""
    tokens = jnp.zeros((1, GPT.max_len), jnp.int32)
    variables = registry.build(GPT).init(jax.random.key(0), tokens, deterministic=True)
    return jax.tree.map(lambda p: p + 1.0, nn.meta.unbox(variables["params"]))


# ---------------------------------------------------------------- schedules
# schedule(count): count = updates already done (optax's count, the loop's state.step), so
# update k (counting from 1) is evaluated at count k - 1.


@pytest.mark.parametrize("kind", SCHEDULES)
def test_first_update_has_lr_and_warmup_peaks_at_warmup_steps(kind):
    s = optim.schedule(OptimConfig(lr=1.0, schedule=kind, warmup_steps=10, min_lr_ratio=0.1), 110)
    assert np.isclose(float(s(0)), 0.1)  # update 1 of 10: a tenth of the peak, not 0
    assert np.isclose(float(s(4)), 0.5) and np.isclose(float(s(9)), 1.0)  # updates 5 and 10


def test_a_warmup_longer_than_the_run_is_a_warning_line():
    """50 warm-up steps in a 20-step run: the lr ends at 40% of its peak (schedule(19) is update 20)."""
    cfg = OptimConfig(lr=1e-3, warmup_steps=50)
    line = optim.warmup_warning(cfg, 20)
    assert line.startswith("warning: config.optim.warmup_steps=50 is longer than the run's 20 steps: the lr "
                           "never reaches its peak config.optim.lr=0.001 (it ends at 40% of it)")
    assert "\n" not in line and np.isclose(float(optim.schedule(cfg, 20)(19)), 0.4e-3)
    assert optim.warmup_warning(cfg, 50) is None and optim.warmup_warning(cfg, 51) is None


def test_cosine_after_warmup():
    s = optim.schedule(OptimConfig(lr=1.0, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1), 110)
    mid = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 0.5))
    assert np.isclose(float(s(59)), mid, atol=1e-6)  # update 60: half-way through the decay
    assert np.isclose(float(s(109)), 0.1, atol=1e-6)  # update 110, the last, at the floor


def test_linear_rsqrt_wsd_constant():
    lin = optim.schedule(OptimConfig(lr=2.0, schedule="linear", warmup_steps=0, min_lr_ratio=0.0), 100)
    assert np.isclose(float(lin(49)), 1.0) and np.isclose(float(lin(99)), 0.0)
    rs = optim.schedule(OptimConfig(lr=1.0, schedule="rsqrt", warmup_steps=100), 1000)
    assert np.isclose(float(rs(99)), 1.0) and np.isclose(float(rs(399)), 0.5)  # sqrt(100 / k)
    wsd = optim.schedule(OptimConfig(lr=1.0, schedule="wsd", warmup_steps=10, decay_fraction=0.2,
                                     min_lr_ratio=0.0), 100)
    assert np.isclose(float(wsd(49)), 1.0) and np.isclose(float(wsd(79)), 1.0)
    assert np.isclose(float(wsd(89)), 0.5) and np.isclose(float(wsd(99)), 0.0)
    sqrt = optim.schedule(OptimConfig(lr=1.0, schedule="wsd", warmup_steps=10, decay_fraction=0.2,
                                      min_lr_ratio=0.1, cooldown_shape="1-sqrt"), 100)
    assert np.isclose(float(sqrt(79)), 1.0)  # the last stable update
    assert np.isclose(float(sqrt(84)), 0.1 + 0.9 * (1 - 0.25 ** 0.5))  # a quarter into the cooldown
    assert np.isclose(float(sqrt(89)), 0.1 + 0.9 * (1 - 0.5 ** 0.5)) and np.isclose(float(sqrt(99)), 0.1)
    const = optim.schedule(OptimConfig(lr=0.3, schedule="constant", warmup_steps=0), 10)
    assert np.isclose(float(const(7)), 0.3)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_holds_its_final_value_past_the_horizon(kind):
    s = optim.schedule(OptimConfig(lr=1.0, schedule=kind, warmup_steps=10, min_lr_ratio=0.1), 100)
    final = float(s(99))  # update 100, the last of the horizon
    for count in (100, 101, 150, 1000, 10**6):
        assert np.isclose(float(s(count)), final), count
    if kind in ("cosine", "linear", "wsd"):
        assert np.isclose(final, 0.1)


def test_optimizer_steps_at_the_schedule_the_loop_logs(gpt_params):
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="cosine", warmup_steps=3, weight_decay=0.0,
                      grad_clip=0.0, b1=0.0)
    tx, lr = optim.optimizer(cfg, 10), optim.schedule(cfg, 10)
    ones = jax.tree.map(jnp.ones_like, gpt_params)
    state = tx.init(gpt_params)
    for count in range(12):  # the loop logs lr(state.step), state.step = updates done
        updates, state = tx.update(ones, state, gpt_params)
        assert np.allclose(updates["embed"]["embedding"], -float(lr(count)))
        assert float(lr(count)) > 0


# ---------------------------------------------------------------- weight decay


def _one_step(name: str, params, **overrides):
    cfg = OptimConfig(name=name, lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.1,
                      grad_clip=0.0, **overrides)
    tx = optim.optimizer(cfg, 10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    return updates


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_decay_is_decoupled(gpt_params, name):
    """With zero gradients, one update shrinks a decayed weight by lr * wd * p (AdamW), not wd * p."""
    updates = _one_step(name, gpt_params)
    for module in ("query", "out"):
        p = gpt_params["layer_0"]["attn"][module]["kernel"]
        np.testing.assert_allclose(updates["layer_0"]["attn"][module]["kernel"], -1e-3 * 0.1 * p, rtol=1e-5)


@pytest.mark.parametrize("decay_embeddings", [True, False])
def test_decay_mask_follows_what_a_parameter_is(gpt_params, decay_embeddings):
    """Kernels decay; embedding tables only when asked; biases (the 2-D q/k/v ones too) and
    norm parameters never."""
    assert gpt_params["layer_0"]["attn"]["query"]["bias"].ndim == 2
    updates = _one_step("adamw", gpt_params, decay_embeddings=decay_embeddings)
    decayed = {"kernel", "embedding"} if decay_embeddings else {"kernel"}
    names = []
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        name = path[-1].key
        names.append(name)
        p = _at(gpt_params, path)
        want = -1e-3 * 0.1 * p if name in decayed else jnp.zeros_like(p)
        np.testing.assert_allclose(u, want, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
    assert {"kernel", "embedding", "bias", "scale"} <= set(names)


def _family_trees():
    """Boxed parameter trees (jax.eval_shape) of every family, with every optional part on:
    learned positions, untied heads, separate tables, copy attention, MLM/NSP and classifier
    heads, an LSTM projection."""
    from llmjax.models.bert import BertConfig
    from llmjax.models.encdec import EncDecConfig
    from llmjax.models.lstm import LSTMConfig

    t = jnp.zeros((1, 8), jnp.int32)
    small = dict(num_layers=1, d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64)
    bert = dict(token_types=t, attention_mask=t + 1)
    cases = {"gpt": (GPTConfig(**small, position="learned", tie_embeddings=False), (t,), {}),
             "bert": (BertConfig(**small), (t,), {**bert, "masked_positions": t[:, :2]}),
             "bert_classifier": (BertConfig(**small, head="sequence", num_labels=3), (t,), bert),
             "encdec": (EncDecConfig(**small, position="learned", share_embeddings=False,
                                     tie_embeddings=False, copy_attention=True), (t, t), {}),
             "lstm": (LSTMConfig(num_layers=1, d_model=32, hidden=48), (t,), {})}
    for name, (cfg, args, kwargs) in cases.items():
        model = registry.build(cfg.finalize(100, 8, "cpu", "float32"))
        yield name, jax.eval_shape(
            lambda: model.init(jax.random.key(0), *args, deterministic=True, **kwargs)["params"])


NEVER_DECAYED = {"bias", "scale", "output_bias"}  # biases (the MLM head's too) and norm parameters


@pytest.mark.parametrize("decay_embeddings", [True, False])
def test_decay_mask_decays_every_kernel_and_table_of_every_family(decay_embeddings):
    """Every kernel of every family decays, and every lookup table (token, position, token
    type) when decay_embeddings; what never decays is a bias or a norm parameter. A kernel or
    table under another leaf name (BERT's token types were `token_type_embedding`) fails."""
    decayed = {"kernel", "embedding"} if decay_embeddings else {"kernel"}
    for family, boxed in _family_trees():
        mask = values(optim.decay_mask(boxed, decay_embeddings))
        for path, on in jax.tree_util.tree_leaves_with_path(mask):
            name, where = path[-1].key, f"{family}: {jax.tree_util.keystr(path)}"
            assert name in NEVER_DECAYED | {"kernel", "embedding"}, f"{where}: not a kind the mask knows"
            assert on == (name in decayed), where


def test_a_boxed_tree_gets_the_mask_of_its_values():
    """What init gives (nn.Partitioned leaves, whose paths end in `.value`) is masked by name too."""
    tokens = jnp.zeros((1, GPT.max_len), jnp.int32)
    boxed = jax.eval_shape(lambda: registry.build(GPT).init(jax.random.key(0), tokens)["params"])
    assert isinstance(boxed["embed"]["embedding"], nn.Partitioned)
    mask = optim.decay_mask(values(boxed))
    assert jax.tree.leaves(values(optim.decay_mask(boxed))) == jax.tree.leaves(mask)
    assert sum(jax.tree.leaves(mask)) > 0


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def test_adafactor_without_decay_is_optax_adafactor(gpt_params):
    """The rebuilt chain changes only where decay enters: without it, it is optax's Adafactor."""
    cfg = OptimConfig(name="adafactor", lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.0,
                      grad_clip=0.0)
    ours, theirs = optim.optimizer(cfg, 10), optax.adafactor(1e-3, multiply_by_parameter_scale=False)
    grads = jax.tree.map(lambda p: jnp.sin(p * 7.0), gpt_params)
    a, _ = jax.jit(ours.update)(grads, ours.init(gpt_params), gpt_params)
    b, _ = jax.jit(theirs.update)(grads, theirs.init(gpt_params), gpt_params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_clipping_bounds_the_update_input():
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="constant", warmup_steps=0, weight_decay=0.0,
                      grad_clip=1.0, b1=0.0)
    tx = optim.optimizer(cfg, 10)
    params = {"w": jnp.zeros((3,))}
    u, _ = tx.update({"w": jnp.array([30.0, 40.0, 0.0])}, tx.init(params), params)
    assert np.allclose(u["w"], [-0.6, -0.8, 0.0], atol=1e-6)


# ---------------------------------------------------------------- training a sharded GPT

LRS = {"adamw": 3e-3, "adafactor": 1e-3, "lion": 1e-3, "sgd": 0.2}  # stable for 20 steps


def _text_batch(rows: int = 8) -> np.ndarray:
    """(rows, max_len + 1) byte ids of real Python source: real-looking tokens, no download."""
    data = np.frombuffer(inspect.getsource(json.decoder).encode(), np.uint8).astype(np.int32)
    return data[: rows * (GPT.max_len + 1)].reshape(rows, GPT.max_len + 1)


# lion and sgd keep one parameter-shaped state like adamw's moments (sharded like it here) and
# test_decay_is_decoupled steps each of them: slow; adafactor's factored state stays.
@pytest.mark.parametrize("name", [n if n in ("adamw", "adafactor") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in OPTIMIZERS])
def test_each_optimizer_trains_a_sharded_gpt(name):
    mesh = sharding.make_mesh((2, 2, 2))
    model = registry.build(GPT)
    tx = optim.optimizer(OptimConfig(name=name, lr=LRS[name], schedule="constant", warmup_steps=5), 20)

    def loss_fn(params, tokens_BxL1):
        logits = model.apply({"params": params}, tokens_BxL1[:, :-1], deterministic=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxL1[:, 1:]).mean()

    with sharding.use_mesh(mesh):
        init = init_fn(_init_params(model, GPT.max_len), tx, seed=0)
        _, state_sh = abstract_state(init, mesh)
        state = create(init, state_sh)
        _assert_shardings(tx, state, mesh)

        @functools.partial(jax.jit, in_shardings=(state_sh, sharding.leaf_sharding(mesh, 2)),
                           out_shardings=(state_sh, None), donate_argnums=0)  # as the loop's step
        def step(state, tokens_BxL1):
            loss, grads = jax.value_and_grad(loss_fn)(state.params, tokens_BxL1)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss

        tokens = jax.device_put(_text_batch(), sharding.leaf_sharding(mesh, 2))
        losses = []
        for _ in range(20):
            state, loss = step(state, tokens)
            losses.append(float(loss))
    assert losses[-1] < 0.65 * losses[0], losses  # from ln(512) = 6.2 to below 4.1


def _assert_shardings(tx, state, mesh) -> None:
    """Parameters as the rules say; param-shaped optimizer state (Adam moments, momentum) like
    its parameter; everything else (factored statistics, counters) replicated."""
    assert state.params["layer_0"]["ffn"]["w1"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert state.params["embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
    replicated = NamedSharding(mesh, P())
    ok = optax.tree_map_params(
        tx, lambda leaf, p: leaf.sharding == (p.sharding if leaf.shape == p.shape else replicated),
        state.opt_state, state.params, transform_non_params=lambda x: x.sharding == replicated)
    assert jax.tree.all(ok)
