"""What every token-in family config shares beyond the Transformer stack: its name, the
positional table, the padded vocabulary and the optional classifier head, with their checks
and the runtime finalisation. GPT and BERT extend it (one copy of this logic, not two).
"""
from __future__ import annotations

import dataclasses

from llmjax.blocks.transformer import TransformerConfig
from llmjax.config import RUNTIME, DataConfig, check_positive, fail


def pad_vocab(vocab_size: int, multiple: int) -> int:
    """The vocabulary rounded up to a multiple of `multiple` (fast matmuls, even sharding);
    the extra rows are never a target. Shared with families outside this class (the LSTM)."""
    return -(-vocab_size // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class TokenModelConfig(TransformerConfig):
    name: str = ""  # model family, looked up in llmjax.models.registry
    max_len: int = 0  # positional table / KV-cache length (0 = data.seq_len)
    vocab_multiple: int = 64  # pad the vocabulary to a multiple of this (fast matmuls)
    vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)  # padded, from the tokenizer
    # the tokenizer's own ids: the logits of ids >= it (the padding) are masked (0 = none padded)
    real_vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)
    # 0 = the family's own head (LM, MLM + NSP); k > 0 = a k-class sequence classifier (set by a task)
    num_labels: int = dataclasses.field(default=0, metadata=RUNTIME)

    def validate(self) -> None:
        super().validate()
        check_positive("model.vocab_multiple", self.vocab_multiple)
        check_positive("model.max_len", self.max_len, allow_zero=True)
        if self.num_labels < 0:
            raise ValueError(f"num_labels={self.num_labels} is negative: 0 keeps the family's own "
                             "head, k > 0 makes a k-class classifier")

    def max_prompt_len(self, max_new_tokens: int) -> int | None:
        """The longest prompt that leaves room for max_new_tokens (None: no limit)."""
        return self.max_len - max_new_tokens

    def check_generation(self, prompt_len: int, max_new_tokens: int) -> None:
        """A ValueError naming the limit when a prompt and its continuation do not fit."""
        if prompt_len + max_new_tokens > self.max_len:
            raise ValueError(f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} = "
                             f"{prompt_len + max_new_tokens} exceeds the model's max_len {self.max_len}: "
                             "shorten one of them")

    def check_run(self, data: DataConfig, mesh_sizes: tuple[int, int, int] | None) -> None:
        if self.max_len and data.seq_len > self.max_len:
            fail("data.seq_len", data.seq_len, f"exceeds config.model.max_len={self.max_len} "
                 "(the positional table): raise max_len or lower seq_len")
        if mesh_sizes is not None:
            self.validate_mesh(*mesh_sizes)

    def finalize(self, vocab_size: int, max_len: int, platform: str, dtype: str):
        """The runtime config: vocabulary padded to vocab_multiple (the real size kept, so the
        padded ids' logits are masked), max_len 0 -> max_len,
        num_kv_heads 0 -> num_heads, 'auto' attention resolved for the platform."""
        return dataclasses.replace(self.with_backend(platform),
                                   vocab_size=pad_vocab(vocab_size, self.vocab_multiple),
                                   real_vocab_size=vocab_size,
                                   max_len=self.max_len or max_len, num_kv_heads=self.kv_heads,
                                   dtype=dtype)
