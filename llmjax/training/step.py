"""The train and eval steps: pure functions of (state, batch), jitted once by the loop, for any
task.

The task's denominators (token or example counts) are taken over the whole update batch before
the micro-batches run; the gradients of the task's loss *sums* are added over micro-batches and
divided once by that count, then clipped once: k micro-batches give the same update as one
batch k times larger (nanoGPT #168, nanochat PR#59), for any mix of padding.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from llmjax import sharding
from llmjax.tasks.base import Batch, Task
from llmjax.training.state import TrainState


def _split_micro(batch: Batch, k: int) -> Batch:
    """(B, ...) -> (k, B/k, ...), micro-batch m taking rows m, m+k, ... so that every device
    keeps feeding every micro-batch from its own rows (no resharding)."""

    def split(x):
        x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
        return nn.with_logical_constraint(x, (None, sharding.BATCH) + (None,) * (x.ndim - 2))

    return jax.tree.map(split, batch)


def make_train_step(task: Task, model: nn.Module, tx: optax.GradientTransformation,
                    lr_fn: optax.Schedule, *, seed: int,
                    grad_accum_steps: int = 1) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """(state, batch) -> (new state, metrics). Dropout keys derive from (seed, step), so a
    resumed run draws exactly the dropout masks an uninterrupted run would."""

    def loss_sum(params, micro: Batch, denoms, rng):
        return task.objective(model, params, micro, denoms, rng)

    grad_fn = jax.grad(loss_sum, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        denoms = task.denominators(batch)
        if grad_accum_steps == 1:
            grads, sums = grad_fn(state.params, batch, denoms, rng)
        else:
            def body(carry, xs):
                micro, i = xs
                g, s = grad_fn(state.params, micro, denoms, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, carry, (g, s)), None

            micro = _split_micro(batch, grad_accum_steps)
            zero_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
                lambda: grad_fn(state.params, jax.tree.map(lambda x: x[0], micro), denoms, rng)[1]))
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums),
                                            (micro, jnp.arange(grad_accum_steps)))
        count = jnp.maximum(denoms[task.loss_denominator], 1.0)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**task.train_metrics(sums, denoms), "grad_norm": optax.global_norm(grads),
                   "lr": lr_fn(state.step)}
        # One flag for the host: a non-finite loss or gradient stops the run before any save.
        metrics["finite"] = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_eval_step(task: Task, model: nn.Module) -> Callable[[Any, Batch], dict]:
    """params, batch -> the task's eval sums, added over batches on the host, so eval metrics
    are weighted means that do not depend on batch size or padding."""

    def eval_step(params: Any, batch: Batch) -> dict:
        return task.eval_sums(model, params, batch)

    return eval_step


def jit_train_step(step_fn: Callable, state_shardings: Any, batch_shardings: Any) -> Callable:
    """The modern pjit: state in and out on its own shardings, batch over (data, fsdp), and the
    old state's buffers donated to the new one (one copy of the parameters in memory)."""
    return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))
