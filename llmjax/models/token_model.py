"""What every token-in family config shares: the checks of the Transformer stack's keys (the
blocks define them but never import the config layer) and, beyond the stack, its name, the
positional table, the padded vocabulary and the optional task head (llmjax.models.heads), with
their checks and the runtime finalisation. GPT, BERT and the encoder-decoder extend it (one copy of this
logic, not three).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from llmjax.blocks import mup
from llmjax.blocks.attention import BACKENDS
from llmjax.blocks.ffn import FFNS
from llmjax.blocks.norms import NORMS
from llmjax.blocks.positions import POSITIONS
from llmjax.blocks.transformer import NORM_POSITIONS, REMATS, TransformerConfig
from llmjax.config import RUNTIME, DataConfig, check_choice, check_fraction, check_positive, fail


def pad_vocab(vocab_size: int, multiple: int) -> int:
    """The vocabulary rounded up to a multiple of `multiple` (fast matmuls, even sharding);
    the extra rows are never a target. Shared with families outside this class (the LSTM)."""
    return -(-vocab_size // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class TokenModelConfig(TransformerConfig):
    heads: ClassVar[tuple[str, ...]] = ()  # the task heads (llmjax.models.heads) it serves
    name: str = ""  # model family, looked up in llmjax.models.registry
    max_len: int = 0  # positional table / KV-cache length (0 = data.seq_len)
    vocab_multiple: int = 64  # pad the vocabulary to a multiple of this (fast matmuls)
    vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)  # padded, from the tokenizer
    dtype: str = dataclasses.field(default="float32", metadata=RUNTIME)  # compute dtype (train.dtype)
    # the tokenizer's own ids: the logits of ids >= it (the padding) are masked (0 = none padded)
    real_vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)
    # a task head (llmjax.models.heads.HEADS) set by a task; '' = the family's own (LM, MLM + NSP)
    head: str = dataclasses.field(default="", metadata=RUNTIME)
    # classes of a sequence or token head (set by the task with head)
    num_labels: int = dataclasses.field(default=0, metadata=RUNTIME)

    def validate(self) -> None:
        """One-line ConfigError for the first bad key; cheap, before any data or compile."""
        self._validate_stack()
        check_positive("model.vocab_multiple", self.vocab_multiple)
        check_positive("model.max_len", self.max_len, allow_zero=True)

    def _validate_stack(self) -> None:
        """The Transformer stack's keys (llmjax.blocks.transformer), checked here: blocks never
        import the config layer."""
        for key, choices in (("position", POSITIONS), ("ffn", FFNS), ("norm", NORMS),
                             ("norm_position", NORM_POSITIONS), ("attention_backend", BACKENDS),
                             ("remat", REMATS), ("parametrization", mup.PARAMETRIZATIONS)):
            check_choice(f"model.{key}", getattr(self, key), choices)
        for key in ("num_layers", "d_model", "num_heads", "mlp_dim"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.num_kv_heads", self.num_kv_heads, allow_zero=True)
        check_positive("model.norm_epsilon", self.norm_epsilon, allow_zero=True)
        check_positive("model.base_width", self.base_width, allow_zero=True)
        for key in ("dropout", "attention_dropout"):
            check_fraction(f"model.{key}", getattr(self, key))
        if self.d_model % self.num_heads:
            fail("model.d_model", self.d_model,
                 f"must be divisible by config.model.num_heads={self.num_heads}: change either")
        if self.num_heads % self.kv_heads:
            fail("model.num_kv_heads", self.num_kv_heads,
                 f"must divide config.model.num_heads={self.num_heads} (grouped-query attention)")
        if self.position == "rope" and self.head_dim % 2:
            fail("model.d_model", self.d_model, "rope needs an even head dim (d_model / num_heads)")
        if self.parametrization == "mup" and self.base_width % self.num_heads:
            fail("model.base_width", self.base_width, f"must be divisible by config.model.num_heads="
                 f"{self.num_heads} (mup's base head dim): change either")

    def validate_mesh(self, data: int, fsdp: int, tensor: int) -> None:
        """One-line ConfigError when the mesh's axes do not divide the stack's widths."""
        if self.kv_heads % tensor or self.num_heads % tensor:
            fail("mesh.tensor", tensor,
                 f"must divide num_heads={self.num_heads} and num_kv_heads={self.kv_heads}")
        if self.mlp_dim % tensor:
            fail("mesh.tensor", tensor, f"must divide config.model.mlp_dim={self.mlp_dim}")
        if self.d_model % fsdp:
            fail("mesh.fsdp", fsdp, f"must divide config.model.d_model={self.d_model}")

    def layer_matmul_params(self, cross_attention: bool = False) -> int:
        """Kernel parameters of one layer (attention, cross-attention if any, feed-forward): each
        takes part in one matmul per token. Each family's matmul_params sums its layers'."""
        d, h, kv, hd = self.d_model, self.num_heads, self.kv_heads, self.head_dim
        attn = d * h * hd + 2 * d * kv * hd + h * hd * d
        ffn = (3 if self.ffn == "swiglu" else 2) * d * self.mlp_dim
        return (2 if cross_attention else 1) * attn + ffn

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
