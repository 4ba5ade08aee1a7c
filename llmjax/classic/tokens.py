"""The run's tokens of a text, words or pieces, and the tokenizer the pieces come from: the
one named by features.tokenizer_from (a run's workdir or its tokenizer directory), else the
workdir's own, trained on the train texts per config.data as the classify task trains one."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from llmjax.classic import units
from llmjax.classic.config import BaselineConfig
from llmjax.config import UserError
from llmjax.data import example_cache
from llmjax.data.tokenizers import (
    Tokenizer,
    has_tokenizer,
    load_tokenizer,
    train_or_load_tokenizer,
)


def tokenizer(run: BaselineConfig, train_texts: Sequence[str], workdir: str,
              log: Callable[[str], None]) -> Tokenizer:
    """The pieces' tokenizer (see the module docstring)."""
    source = run.features.tokenizer_from
    try:
        if source:
            for directory in (source, os.path.join(source, "tokenizer")):
                if has_tokenizer(directory):
                    tok = load_tokenizer(directory)
                    log(f"tokenizer: {tok.name} from {directory}")
                    return tok
            raise UserError(f"config.features.tokenizer_from={source!r} holds no tokenizer: name "
                            "a run's workdir or its tokenizer/ directory")
        sample = example_cache.tokenizer_sample(enumerate(train_texts), run.data.spm_train_chars)
        return train_or_load_tokenizer(run.data, sample, os.path.join(workdir, "tokenizer"), log)
    except UserError:
        raise
    except ValueError as e:  # a damaged or incompatible saved tokenizer: one line already
        raise UserError(str(e)) from e


def text_tokens(run: BaselineConfig, tok: Tokenizer | None, texts: Sequence[str],
                pairs: Sequence[str] | None) -> list[list[str]]:
    """Each example's token strings (a pair joined, see llmjax.classic.units)."""
    f = run.features

    def split(batch):
        if batch is None:
            return None
        return units.pieces(tok, batch) if f.units == "pieces" else units.words(
            batch, f.token_pattern, f.lowercase)
    return units.joined(split(texts), split(pairs))
