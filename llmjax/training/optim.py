"""Optimizers and learning-rate schedules, by name, from optax.

Weight decay is decoupled and masked to matrices (ndim >= 2): norms and biases are never
decayed. Gradient clipping is by global norm and happens once per update, after gradient
accumulation (the caller hands in the already-averaged gradient).
"""
from __future__ import annotations

from typing import Any

import jax
import optax

from llmjax.config import OptimConfig


def schedule(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to cfg.lr, then the named decay until num_steps."""
    peak, warm = cfg.lr, cfg.warmup_steps
    floor = peak * cfg.min_lr_ratio
    rest = max(1, num_steps - warm)
    if cfg.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, rest, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, floor, rest)
    elif cfg.schedule == "rsqrt":
        # 1/sqrt(step) after warm-up, continuous with the warm-up peak.
        w = max(1, warm)
        decay = lambda count: peak * (w / (count + w)) ** 0.5  # noqa: E731
    elif cfg.schedule == "wsd":
        # Warmup-stable-decay: hold the peak, then decay linearly over the last decay_fraction.
        decay_steps = max(1, int(round(cfg.decay_fraction * num_steps)))
        stable = max(0, rest - decay_steps)
        decay = optax.join_schedules(
            [optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay_steps)], [stable])
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if warm == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), decay], [warm])


def decay_mask(params: Any) -> Any:
    """True for matrices (decayed), False for vectors (norm scales, biases)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def optimizer(cfg: OptimConfig, num_steps: int) -> optax.GradientTransformation:
    """The full update rule: clip, then the named optimizer with decoupled, masked decay."""
    lr = schedule(cfg, num_steps)
    wd = cfg.weight_decay
    if cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd, mask=decay_mask)
    elif cfg.name == "lion":
        opt = optax.lion(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=wd, mask=decay_mask)
    elif cfg.name == "adafactor":
        # Absolute step sizes, so config.optim.lr means the same as for adamw.
        opt = optax.adafactor(lr, multiply_by_parameter_scale=False, weight_decay_rate=wd or None,
                              weight_decay_mask=decay_mask)
    elif cfg.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(wd, mask=decay_mask), optax.sgd(lr, momentum=cfg.b1))
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}")
    # The clip is always a link of the chain (identity when off), so the optimizer state has the
    # same tree whatever grad_clip is, and a run may resume with another clip.
    clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
    return optax.chain(clip, opt)
