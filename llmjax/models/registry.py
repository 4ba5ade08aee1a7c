"""Model families: name -> (config dataclass, builder), registered beside each builder with
`@register("gpt", GPTConfig)`, so adding a family touches no shared list.

A family's config is a frozen dataclass whose fields (with defaults) are the keys of
`config.model`, plus:
  validate()                          one-line ConfigError for a bad key (called on resolve)
  check_run(data, mesh_sizes)         consistency with the data and the mesh (mesh_sizes may be None)
  finalize(vocab_size, max_len, platform, dtype) -> config   the runtime config: padded vocabulary,
                                      lengths, attention backend, compute dtype
  flops_per_token(seq_len)            training FLOPs per token (forward + backward)
  summary()                           one line for the run's log (vocabulary, positions, ...)
  tasks (ClassVar)                    the task names it can be trained on (checked on resolve)
  lr_multipliers() (optional)         parameter path -> learning-rate multiplier (µP), or None
  inputs (ClassVar)                   the optional batch inputs its model takes as keywords, e.g.
                                      ("positions", "segment_ids"); a task passes only these
  heads (ClassVar)                    the task heads it serves (llmjax.models.heads: sequence,
                                      token, span), checked on resolve against the task's `head`
  head, num_labels (RUNTIME fields)   the task head a task put on it ('' = the family's own) and
                                      its classes (families that serve heads)
A family that generates also has (llmjax.generation.decode):
  prompt_is_source (ClassVar)         True: a prompt is a whole source ending in EOS (encoder-
                                      decoder); False: a prefix to continue
  check_generation(prompt_len, n)     a one-line ValueError when a prompt and n new tokens do not fit
  max_prompt_len(n)                   the longest prompt that leaves room for n new tokens (None: any)
and its module the linen methods prefill / extend / score.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from llmjax.config import Registry
from llmjax.models import heads


def _load() -> None:
    import llmjax.models  # noqa: F401  (importing the package registers every family)


FAMILIES = Registry("model", "model family", _load)
register, names, default_group, resolve = (FAMILIES.register, FAMILIES.names,
                                           FAMILIES.default_group, FAMILIES.resolve)


def build(cfg: Any) -> nn.Module:
    """The model of cfg's family, built from cfg (a finalized family config)."""
    heads.check(getattr(cfg, "head", ""), getattr(cfg, "num_labels", 0), getattr(cfg, "heads", ()))
    return FAMILIES.entry(cfg.name).target(cfg)


def lr_multipliers(cfg: Any) -> Callable[[tuple[str, ...]], float] | None:
    """The family's per-parameter learning-rate multipliers (None: every parameter gets the lr)."""
    method = getattr(cfg, "lr_multipliers", None)
    return method() if method is not None else None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A finalized family config as plain JSON values (runtime fields included): what rebuilds
    the exact model of a run without its data (sampling, export)."""
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict[str, Any]) -> Any:
    """The finalized family config that config_to_dict wrote."""
    entry = FAMILIES.entry(values.get("name", ""))
    known = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"model config of family {entry.name!r} has unknown keys {unknown}: it was "
                         "written by another llmjax version; retrain or edit model.json")
    if values.get("num_labels") and "head" in known and "head" not in values:
        values = dict(values, head="sequence")  # written before heads had names: a classifier
    return entry.config_cls(**values)
