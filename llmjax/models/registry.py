"""Model families: name -> (config dataclass, builder). Each family registers itself beside its
builder, so adding one touches no shared list.

A family's config is a frozen dataclass whose fields (with defaults) are the keys of
`config.model`, plus:
  validate()                          one-line ConfigError for a bad key (called on resolve)
  check_run(data, mesh_sizes)         consistency with the data and the mesh (mesh_sizes may be None)
  finalize(vocab_size, max_len, platform, dtype) -> config   the runtime config: padded vocabulary,
                                      lengths, attention backend, compute dtype
  flops_per_token(seq_len)            training FLOPs per token (forward + backward)
  summary()                           one line for the run's log (vocabulary, positions, ...)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import ml_collections

from llmjax.config import ConfigError, from_group, to_group

Builder = Callable[[Any], nn.Module]


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    build: Builder


_FAMILIES: dict[str, Family] = {}


def register(name: str, config_cls: type) -> Callable[[Builder], Builder]:
    """Decorator on a family's builder: `build(cfg)` with cfg.name == name calls it."""
    def wrap(builder: Builder) -> Builder:
        if name in _FAMILIES and _FAMILIES[name].build is not builder:
            raise ValueError(f"model family {name!r} is already registered")
        _FAMILIES[name] = Family(name, config_cls, builder)
        return builder
    return wrap


def names() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_FAMILIES))


def family(name: str) -> Family:
    _load()
    if name not in _FAMILIES:
        raise ConfigError(f"config.model.name={name!r}: unknown model family; registered: "
                          f"{', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def default_group(name: str) -> ml_collections.ConfigDict:
    """Every key of the family's config group with its default."""
    return to_group(family(name).config_cls)


def resolve(group: Any) -> Any:
    """The family's frozen config from config.model, checked key by key."""
    return from_group(family(group.get("name", "")).config_cls, group, "model")


def build(cfg: Any) -> nn.Module:
    """The model of cfg's family, built from cfg (a finalized family config)."""
    return family(cfg.name).build(cfg)


def _load() -> None:
    import llmjax.models  # noqa: F401  (importing the package registers every family)
