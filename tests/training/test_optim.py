"""Schedules against their formulas; weight decay skips vectors; optimizers by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.config import OptimConfig
from llmjax.training import optim


def test_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    s = optim.schedule(cfg, 110)
    assert float(s(0)) == 0.0 and np.isclose(float(s(5)), 0.5) and np.isclose(float(s(10)), 1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 0.5))
    assert np.isclose(float(s(60)), mid, atol=1e-6)
    assert np.isclose(float(s(110)), 0.1, atol=1e-6)


def test_linear_rsqrt_wsd_constant():
    lin = optim.schedule(OptimConfig(lr=2.0, schedule="linear", warmup_steps=0, min_lr_ratio=0.0), 100)
    assert np.isclose(float(lin(50)), 1.0)
    rs = optim.schedule(OptimConfig(lr=1.0, schedule="rsqrt", warmup_steps=100), 1000)
    assert np.isclose(float(rs(100)), 1.0) and np.isclose(float(rs(400)), 0.5)
    wsd = optim.schedule(OptimConfig(lr=1.0, schedule="wsd", warmup_steps=10, decay_fraction=0.2,
                                     min_lr_ratio=0.0), 100)
    assert np.isclose(float(wsd(50)), 1.0) and np.isclose(float(wsd(80)), 1.0)
    assert np.isclose(float(wsd(90)), 0.5) and np.isclose(float(wsd(100)), 0.0)
    const = optim.schedule(OptimConfig(lr=0.3, schedule="constant", warmup_steps=0), 10)
    assert np.isclose(float(const(7)), 0.3)


def test_weight_decay_skips_norms_and_biases():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,)), "scale": jnp.ones((2,))}
    cfg = OptimConfig(name="adamw", lr=0.1, schedule="constant", warmup_steps=0, weight_decay=0.5,
                      grad_clip=0.0)
    tx = optim.optimizer(cfg, 10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert np.allclose(updates["kernel"], -0.1 * 0.5)  # decoupled: -lr * wd * p
    assert np.allclose(updates["bias"], 0.0) and np.allclose(updates["scale"], 0.0)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "lion", "sgd"])
def test_each_optimizer_descends(name):
    target = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    params = {"w": jnp.zeros((2, 2))}
    cfg = OptimConfig(name=name, lr=0.05, schedule="constant", warmup_steps=0, weight_decay=0.0)
    tx = optim.optimizer(cfg, 100)
    state = tx.init(params)
    loss = lambda p: jnp.sum((p["w"] - target) ** 2)  # noqa: E731
    start = float(loss(params))
    for _ in range(50):
        g = jax.grad(loss)(params)
        u, state = tx.update(g, state, params)
        params = jax.tree.map(lambda a, b: a + b, params, u)
    assert float(loss(params)) < 0.5 * start


def test_clipping_bounds_the_update_input():
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="constant", warmup_steps=0, weight_decay=0.0,
                      grad_clip=1.0, b1=0.0)
    tx = optim.optimizer(cfg, 10)
    params = {"w": jnp.zeros((3,))}
    u, _ = tx.update({"w": jnp.array([30.0, 40.0, 0.0])}, tx.init(params), params)
    assert np.allclose(u["w"], [-0.6, -0.8, 0.0], atol=1e-6)
