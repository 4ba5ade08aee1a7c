"""Training length from a compute budget (config.train.budget_flops), so an isoFLOP sweep gives
every model size the steps its budget buys: D = C / (6N) with budget_rule "6N" (Chinchilla's
C = 6ND, N counting every parameter), or C over the task's own FLOPs per step with "exact" (the
count the training log and the sweep's results report: attention included, lookups not)."""
from __future__ import annotations

import dataclasses

from llmjax.config import ConfigError, TrainConfig


def with_budget(t: TrainConfig, flops_per_step: float, n_params: int, tokens_per_step: int) -> TrainConfig:
    """t with num_steps = round(budget_flops / FLOPs per step); t itself when no budget is set."""
    if not t.budget_flops:
        return t
    per_step = flops_per_step if t.budget_rule == "exact" else 6.0 * n_params * tokens_per_step
    steps = int(round(t.budget_flops / per_step))
    if steps < 1:
        raise ConfigError(f"config.train.budget_flops={t.budget_flops:.3g} buys {t.budget_flops / per_step:.2f} "
                          f"steps of {per_step:.3g} FLOPs ({t.budget_rule}): raise the budget or shrink the "
                          "model or batch")
    return dataclasses.replace(t, num_steps=steps)
