"""Optimizers and learning-rate schedules, by name, from optax.

Weight decay scales with the learning rate: adamw, lion and adafactor shrink a decayed weight
by lr * wd * p per update (decoupled, AdamW); sgd adds wd * p to the gradient ahead of its
momentum. The decay mask goes by what a parameter is, named by its leaf (as nanodo does), not by
its rank: `kernel` leaves are decayed; `embedding` leaves (token and learned-position tables)
only when config.optim.decay_embeddings; nothing else (biases, including the 2-D per-head q/k/v
ones, and norm scales and biases). A new kind of parameter is therefore not decayed until it is
named here. Gradient clipping is by global norm and happens once per update, after gradient
accumulation (the caller hands in the already-averaged gradient).

Per-parameter learning rates (µP) come from the model config as a function from a parameter's
path (its dict keys) to a multiplier; the update of each parameter, decay included, is scaled by
it after the optimizer, so a parameter's decay follows its own learning rate. Only the
normalised, Adam-type optimizers take them: µP for SGD scales other parameters.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from llmjax.config import ConfigError, OptimConfig

LrMultipliers = Callable[[tuple[str, ...]], float]  # parameter path -> learning-rate multiplier
ADAPTIVE = ("adamw", "lion", "adafactor")  # normalised updates: Adam's µP learning-rate scaling fits


def schedule(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """The learning rate as a function of `count`, the number of updates already done: optax's
    count inside the optimizer and the loop's state.step when it logs lr, so the two agree.

    Update k = count + 1 gets peak * k / warmup_steps during warm-up (never 0), the peak at
    update warmup_steps, then the named decay, whose final value at update num_steps is held
    from then on (a run continued past its horizon keeps its last learning rate).
    """
    by_update = _by_update(cfg, num_steps)
    return lambda count: by_update(jnp.minimum(count + 1, num_steps))


def warmup_warning(cfg: OptimConfig, num_steps: int) -> str | None:
    """One line for the run's log when the warm-up outlasts the schedule's num_steps: the lr
    never reaches its peak (not an error: a short test run may want that)."""
    if cfg.warmup_steps <= num_steps:
        return None
    return (f"warning: config.optim.warmup_steps={cfg.warmup_steps} is longer than the run's {num_steps} "
            f"steps: the lr never reaches its peak config.optim.lr={cfg.lr:g} (it ends at "
            f"{num_steps / cfg.warmup_steps:.0%} of it); lower optim.warmup_steps or train longer")


def _by_update(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """The learning rate of update k (counting from 1)."""
    peak, warm = cfg.lr, cfg.warmup_steps
    decay = _decay(cfg, num_steps)
    if warm == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), decay], [warm])


def _decay(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """The named decay, as a function of updates since the warm-up peak."""
    peak, warm = cfg.lr, cfg.warmup_steps
    floor = peak * cfg.min_lr_ratio
    rest = max(1, num_steps - warm)
    if cfg.schedule == "constant":
        return optax.constant_schedule(peak)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, rest, alpha=cfg.min_lr_ratio)
    if cfg.schedule == "linear":
        return optax.linear_schedule(peak, floor, rest)
    if cfg.schedule == "rsqrt":
        # 1/sqrt(update) after warm-up, continuous with the warm-up peak.
        w = max(1, warm)
        return lambda since_peak: peak * (w / (since_peak + w)) ** 0.5
    if cfg.schedule == "wsd":
        # Warmup-stable-decay: hold the peak, then decay over the last decay_fraction, linearly
        # or as 1 - sqrt (Hagele et al. 2024, whose cooldown it matches cosine with).
        decay_steps = max(1, int(round(cfg.decay_fraction * num_steps)))
        stable = max(0, rest - decay_steps)
        if cfg.cooldown_shape == "1-sqrt":
            def cooldown(t):
                return floor + (peak - floor) * (1.0 - jnp.sqrt(jnp.clip(t / decay_steps, 0.0, 1.0)))
        else:
            cooldown = optax.linear_schedule(peak, floor, decay_steps)
        return optax.join_schedules([optax.constant_schedule(peak), cooldown], [stable])
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def decay_mask(params: Any, decay_embeddings: bool = True) -> Any:
    """True where weight decay applies: kernels, and embedding tables if decay_embeddings. A
    leaf is named by its last dict key, so a boxed tree (nn.Partitioned, whose leaf path ends in
    `.value`) gets the same mask as its values."""
    decayed = ("kernel", "embedding") if decay_embeddings else ("kernel",)

    def name(path) -> str | None:
        keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return keys[-1] if keys else None
    return jax.tree_util.tree_map_with_path(lambda path, _: name(path) in decayed, params)


def check_lr_multipliers(cfg: OptimConfig, lr_multipliers: LrMultipliers | None) -> None:
    """A one-line ConfigError when per-parameter learning rates meet an optimizer they do not fit."""
    if lr_multipliers is not None and cfg.name not in ADAPTIVE:
        raise ConfigError(f"config.optim.name={cfg.name!r}: model.parametrization='mup' scales learning "
                          f"rates for Adam-type optimizers: use one of {', '.join(ADAPTIVE)}")


def scale_by_multipliers(lr_multipliers: LrMultipliers) -> optax.GradientTransformation:
    """Each update times its parameter's multiplier (static floats, read off the tree's paths)."""
    def scale(path, u):
        m = lr_multipliers(tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey)))
        return u if m == 1.0 else u * m
    return optax.stateless(lambda updates, _: jax.tree_util.tree_map_with_path(scale, updates))


def optimizer(cfg: OptimConfig, num_steps: int,
              lr_multipliers: LrMultipliers | None = None) -> optax.GradientTransformation:
    """The full update rule: clip, then the named optimizer with decoupled, masked decay, then
    the per-parameter learning-rate multipliers if any (model.parametrization='mup')."""
    check_lr_multipliers(cfg, lr_multipliers)
    lr = schedule(cfg, num_steps)
    wd = cfg.weight_decay
    mask = functools.partial(decay_mask, decay_embeddings=cfg.decay_embeddings)
    if cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd, mask=mask)
    elif cfg.name == "lion":
        opt = optax.lion(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=wd, mask=mask)
    elif cfg.name == "adafactor":
        # optax.adafactor's rescaling and block clipping, with absolute step sizes (no
        # parameter-scale factor, so config.optim.lr means the same as for adamw) and the decay
        # added before the learning rate, as in AdamW (optax's weight_decay_rate skips the lr).
        opt = optax.chain(optax.scale_by_factored_rms(), optax.clip_by_block_rms(1.0),
                          optax.add_decayed_weights(wd, mask=mask), optax.scale_by_learning_rate(lr))
    elif cfg.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(wd, mask=mask), optax.sgd(lr, momentum=cfg.b1))
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}")
    # The clip is always a link of the chain (identity when off), so the optimizer state has the
    # same tree whatever grad_clip is, and a run may resume with another clip.
    clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
    if lr_multipliers is None:
        return optax.chain(clip, opt)
    return optax.chain(clip, opt, scale_by_multipliers(lr_multipliers))
