"""µP on a real GPT: equal to standard at base width (but for the zero readout), hidden init
std ~ 1/sqrt(m), LR multipliers 1/m exactly on hidden matrices, Adam's first step of lr/m,
decay following the parameter's own lr, and the one-line config errors."""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax import experiment
from llmjax.config import ConfigError, OptimConfig
from llmjax.models import registry
from llmjax.models.gpt import GPTConfig
from llmjax.training import optim

BASE = GPTConfig(vocab_size=64, num_layers=3, d_model=32, num_heads=4, mlp_dim=64, max_len=16,
                 tie_embeddings=False, ffn="swiglu", init_std=0.05)
MUP = dataclasses.replace(BASE, parametrization="mup", base_width=32)
TOKENS = np.random.default_rng(0).integers(0, 64, size=(2, 16)).astype(np.int32)
HIDDEN = {"query", "key", "value", "out", "w1", "w2", "w3"}


@functools.lru_cache(maxsize=None)
def _init(cfg):
    return nn.meta.unbox(jax.jit(registry.build(cfg).init)(jax.random.key(0), TOKENS)["params"])


def _params(cfg):
    """cfg's initial parameters (a fresh tree of the cached arrays: tests may edit it)."""
    return jax.tree.map(lambda x: x, _init(cfg))


def _wide(d_model):
    return dataclasses.replace(MUP, d_model=d_model, mlp_dim=2 * d_model)


def _leaves(tree):
    return {tuple(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_base_width_equals_standard_but_for_the_zero_readout():
    std, mup = _params(BASE), _params(MUP)
    assert not np.any(mup["head"]["kernel"]) and np.any(std["head"]["kernel"])
    for path, leaf in _leaves(std).items():
        if path != ("head", "kernel"):
            np.testing.assert_array_equal(leaf, _leaves(mup)[path], err_msg=str(path))
    # With the standard head the outputs are the same: at m = 1 the score scale is 1/sqrt(D).
    mup["head"] = std["head"]
    np.testing.assert_array_equal(jax.jit(registry.build(MUP).apply)({"params": mup}, TOKENS),
                                  jax.jit(registry.build(BASE).apply)({"params": std}, TOKENS))


def test_hidden_init_std_scales_as_one_over_sqrt_m():
    narrow, wide = _leaves(_params(_wide(32))), _leaves(_params(_wide(128)))  # m = 1 and 4
    for path in narrow:
        ratio = np.std(narrow[path]) / np.std(wide[path]) if np.std(wide[path]) else 0.0
        if path[-1] == "kernel" and path[-2] in HIDDEN:
            assert ratio == pytest.approx(2.0, rel=0.1), path
        elif path[-1] == "embedding":
            assert ratio == pytest.approx(1.0, rel=0.1), path
    assert not np.any(wide[("head", "kernel")])


@pytest.mark.parametrize("scan_layers", [False, True])
def test_lr_multipliers_are_one_over_m_on_hidden_matrices_only(scan_layers):
    cfg = dataclasses.replace(_wide(128), scan_layers=scan_layers)  # m = 4
    mult = registry.lr_multipliers(cfg)
    paths = list(_leaves(_params(cfg)))
    hidden = [p for p in paths if mult(p) == 0.25]
    assert {p[-2] for p in hidden} == HIDDEN and all(p[-1] == "kernel" for p in hidden)
    assert len(hidden) == (1 if scan_layers else 3) * len(HIDDEN)
    assert all(mult(p) == 1.0 for p in paths if p not in hidden)  # embeddings, norms, biases, head
    assert {("embed", "embedding"), ("pos_embed", "embedding"), ("head", "kernel")} <= set(paths)
    assert registry.lr_multipliers(BASE) is None


def _one_step(cfg, weight_decay=0.0):
    """Parameters, gradients and AdamW's first update. The head is made nonzero: from the zero
    readout only the head itself gets a gradient at the first step."""
    params = _params(cfg)
    params["head"]["kernel"] = 0.05 * jax.random.normal(jax.random.key(1), params["head"]["kernel"].shape)
    model = registry.build(cfg)

    def loss(p):
        logp = jax.nn.log_softmax(model.apply({"params": p}, TOKENS[:, :-1]))
        return -jnp.take_along_axis(logp, TOKENS[:, 1:, None], axis=-1).mean()

    grads = jax.jit(jax.grad(loss))(params)
    ocfg = OptimConfig(lr=1e-2, schedule="constant", warmup_steps=0, weight_decay=weight_decay,
                       grad_clip=0.0, eps=1e-12)
    tx = optim.optimizer(ocfg, 10, registry.lr_multipliers(cfg))
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return _leaves(params), _leaves(grads), _leaves(updates)


def test_one_adamw_step_moves_a_hidden_matrix_by_lr_over_m_and_decays_it_at_lr_over_m():
    """Adam's first step is -lr_p * (sign(g) + wd * p) with lr_p = lr / m on hidden matrices."""
    params, grads, updates = _one_step(_wide(128), weight_decay=0.1)  # m = 4
    for path, lr, wd in ((("layer_1", "ffn", "w2", "kernel"), 1e-2 / 4, 0.1),
                         (("layer_2", "attn", "query", "kernel"), 1e-2 / 4, 0.1),
                         (("head", "kernel"), 1e-2, 0.1), (("embed", "embedding"), 1e-2, 0.1),
                         (("final_norm", "scale"), 1e-2, 0.0)):
        p, g, u = params[path], grads[path], updates[path]
        seen = np.abs(g) > 1e-7
        assert seen.mean() > 0.3, path  # the embedding: the rows of the tokens seen
        np.testing.assert_allclose(u[seen], -lr * (np.sign(g[seen]) + wd * p[seen]), rtol=1e-4,
                                   err_msg=str(path))


def test_config_round_trip_keeps_the_parametrization():
    assert registry.config_from_dict(registry.config_to_dict(MUP)) == MUP


def _resolve(model="gpt", optim_name="adamw", **keys):
    c = experiment.base_config(model, "mlm" if model == "bert" else "seq2seq" if model == "encdec" else "lm")
    c.optim.name = optim_name
    for k, v in keys.items():
        c.model[k] = v
    return experiment.resolve(c)


@pytest.mark.parametrize("model,keys,needle", [
    ("gpt", dict(parametrization="mup"), "model.tie_embeddings=True"),
    ("gpt", dict(parametrization="mu"), "model.parametrization='mu': must be one of standard, mup"),
    ("gpt", dict(parametrization="mup", tie_embeddings=False, base_width=100), "model.base_width=100"),
    ("bert", dict(parametrization="mup"), "model.parametrization='mup'"),
    ("encdec", dict(parametrization="mup"), "model.parametrization='mup'"),
])
def test_config_errors(model, keys, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as e:
        _resolve(model, **keys)
    assert "\n" not in str(e.value)


def test_sgd_is_refused_under_mup():
    run = _resolve(parametrization="mup", tie_embeddings=False, optim_name="sgd")
    with pytest.raises(ConfigError, match="optim.name='sgd'"):
        optim.check_lr_multipliers(run.optim, registry.lr_multipliers(run.model))
    optim.check_lr_multipliers(run.optim, registry.lr_multipliers(BASE))  # standard: any optimizer


def test_the_loop_refuses_sgd_under_mup_before_any_data_work(tmp_path):
    from tests.helpers import tiny_config, write_corpus

    c = tiny_config(write_corpus(str(tmp_path / "corpus"), num_files=2), model__parametrization="mup",
                    model__tie_embeddings=False, optim__name="sgd")
    with pytest.raises(ConfigError, match="optim.name='sgd'"):
        experiment.train_and_evaluate(experiment.resolve(c), str(tmp_path / "w"))
    assert not (tmp_path / "w" / "data").exists()
