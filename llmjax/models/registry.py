"""Model name -> builder. Each model file registers itself; `build` is the one entry point.

Later families (BERT, encoder-decoder, LSTM) add a `@register("name")` builder and nothing else.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from llmjax.config import ModelConfig

Builder = Callable[[ModelConfig], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `build(cfg)` with cfg.name == name call this builder."""
    def wrap(builder: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder
    return wrap


def names() -> tuple[str, ...]:
    return tuple(sorted(_BUILDERS))


def build(cfg: ModelConfig) -> nn.Module:
    """The model named cfg.name, built from cfg."""
    import llmjax.models  # noqa: F401  (importing the package registers every model)

    if cfg.name not in _BUILDERS:
        raise ValueError(f"unknown model {cfg.name!r}: registered models are {', '.join(names())}")
    return _BUILDERS[cfg.name](cfg)
