"""The train and eval steps: pure functions of (state, batch), jitted once by the loop.

Gradient accumulation sums *token-weighted* loss sums and their gradients over micro-batches
and divides once by the total token count, then clips once: k micro-batches give the same
update as one batch k times larger (nanoGPT #168, nanochat PR#59).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from llmjax import sharding
from llmjax.training.objectives import cross_entropy_sums
from llmjax.training.state import TrainState

Batch = dict[str, jax.Array]

_MODEL_KEYS = ("positions", "segment_ids")


def _model_kwargs(batch: Batch) -> dict[str, jax.Array]:
    return {k: batch[k] for k in _MODEL_KEYS if k in batch}


def _split_micro(batch: Batch, k: int) -> Batch:
    """(B, L) -> (k, B/k, L), micro-batch m taking rows m, m+k, ... so that every
    device keeps feeding every micro-batch from its own rows (no resharding)."""

    def split(x):
        x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
        return nn.with_logical_constraint(x, (None, sharding.BATCH, sharding.ACT_LENGTH))

    return jax.tree.map(split, batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, lr_fn: optax.Schedule,
                    *, seed: int, grad_accum_steps: int = 1,
                    z_loss: float = 0.0) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """(state, batch) -> (new state, metrics). Dropout keys derive from (seed, step), so a
    resumed run draws exactly the dropout masks an uninterrupted run would."""

    def loss_sums(params, micro: Batch, rng) -> tuple[jax.Array, dict]:
        logits = model.apply({"params": params}, micro["inputs"], deterministic=False,
                             rngs={"dropout": rng}, **_model_kwargs(micro))
        sums = cross_entropy_sums(logits, micro["targets"], micro["weights"], z_loss)
        return sums["loss_sum"], sums

    grad_fn = jax.grad(loss_sums, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        if grad_accum_steps == 1:
            grads, sums = grad_fn(state.params, batch, rng)
        else:
            def body(carry, xs):
                micro, i = xs
                g, s = grad_fn(state.params, micro, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, carry, (g, s)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            zero_sums = {k: jnp.zeros((), jnp.float32) for k in ("nll_sum", "weight_sum", "loss_sum")}
            micro = _split_micro(batch, grad_accum_steps)
            (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums),
                                            (micro, jnp.arange(grad_accum_steps)))
        count = jnp.maximum(sums["weight_sum"], 1.0)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": sums["nll_sum"] / count,
            "grad_norm": optax.global_norm(grads),
            "lr": lr_fn(state.step),
            "tokens": sums["weight_sum"],
        }
        if z_loss:
            metrics["z_loss"] = (sums["loss_sum"] - sums["nll_sum"]) / count
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_eval_step(model: nn.Module, byte_lengths: jax.Array) -> Callable[[Any, Batch], dict]:
    """params, batch -> sums (nll, tokens, bytes) to be added over batches on the host, so the
    eval loss is a token-weighted mean that does not depend on batch size or padding."""

    def eval_step(params: Any, batch: Batch) -> dict:
        logits = model.apply({"params": params}, batch["inputs"], deterministic=True,
                             **_model_kwargs(batch))
        sums = cross_entropy_sums(logits, batch["targets"], batch["weights"])
        n_bytes = jnp.sum(byte_lengths[batch["targets"]] * batch["weights"])
        return {"nll_sum": sums["nll_sum"], "weight_sum": sums["weight_sum"], "byte_sum": n_bytes}

    return eval_step


def jit_train_step(step_fn: Callable, state_shardings: Any, batch_sharding: Any) -> Callable:
    """The modern pjit: state in and out on its own shardings, batch over (data, fsdp), and the
    old state's buffers donated to the new one (one copy of the parameters in memory)."""
    return jax.jit(step_fn, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))
