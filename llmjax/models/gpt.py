"""GPT: a decoder-only causal language model (Radford et al. 2019), configurable toward LLaMA-style
variants (RoPE/ALiBi, RMSNorm, SwiGLU, grouped-query attention, untied head).

`GPTConfig` (the family's keys, validation and runtime finalisation) also holds the model's cost
arithmetic: `matmul_params` and `flops_per_token`.

Shape key: B batch, L length, E embed width (d_model), V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.embed import Embed, Unembed
from llmjax.blocks.norms import make_norm
from llmjax.blocks.positions import LearnedPositions, sinusoidal_embedding, token_positions
from llmjax.blocks.transformer import run_layers
from llmjax.config import fail
from llmjax.models import heads as task_heads
from llmjax.models.registry import register
from llmjax.models.token_model import TokenModelConfig


@dataclasses.dataclass(frozen=True)
class GPTConfig(TokenModelConfig):
    """config.model for name="gpt": the Transformer stack's keys plus these. A task head (set
    by a task: llmjax.models.heads) replaces the LM head; a sequence head reads the last real token."""
    tasks: ClassVar[tuple[str, ...]] = ("lm", "seq2seq")  # the tasks (task.name) it trains on with its own head
    heads: ClassVar[tuple[str, ...]] = task_heads.HEADS  # the task heads it serves
    name: str = "gpt"  # model family, looked up in llmjax.models.registry
    tie_embeddings: bool = True  # output projection shares the token embedding
    embed_init: str = ""  # a Word2Vec run's embeddings.npy (this run's tokenizer, width d_model) the token table starts from (llmjax.training.embed_init)
    inputs: ClassVar[tuple[str, ...]] = ("positions", "segment_ids")  # optional batch inputs it takes
    prompt_is_source: ClassVar[bool] = False  # a generation prompt is a prefix to continue

    def validate(self) -> None:
        super().validate()
        if self.parametrization == "mup" and self.tie_embeddings:
            fail("model.tie_embeddings", True, "mup needs an untied readout (zero-initialised, its "
                 "logits scaled by 1/m, while the input table keeps its init): set it False")

    def summary(self) -> str:
        head = f", {task_heads.describe(self.head, self.num_labels)}" if self.head else ""
        mup = (f", mup (width multiplier {self.width_multiplier:g})"
               if self.parametrization == "mup" else "")
        return (f"vocab {self.vocab_size}, {self.position} positions, "
                f"{self.attention_backend} attention{head}{mup}")

    @property
    def readout_init_std(self) -> float:
        """Init std of the LM head and a task head: 0 under mup (zero readout)."""
        return 0.0 if self.parametrization == "mup" else self.init_std

    def readout(self, logits: jnp.ndarray) -> jnp.ndarray:
        """Output logits x 1/m under mup (Tensor Programs V's readout multiplier)."""
        return logits / self.width_multiplier if self.parametrization == "mup" else logits

    def matmul_params(self) -> int:
        """Parameters that take part in matmuls: attention and FFN kernels and the output head
        (the token table once when tied; a task head's per-token kernel, none for a sequence
        head, which acts once per row). Excluded: lookups (untied input table, learned
        positions), biases, norms."""
        head = (task_heads.per_token_params(self.head, self.num_labels, self.d_model) if self.head
                else self.d_model * self.vocab_size)
        return self.num_layers * self.layer_matmul_params() + head

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward + backward: 6 N_matmul + 12 n_layers d_model T
        (the PaLM appendix B / nanoGPT estimate; the attention term ignores the causal half)."""
        return 6.0 * self.matmul_params() + 12.0 * self.num_layers * self.d_model * seq_len


class GPT(nn.Module):
    """tokens (B, L) int32 -> next-token logits (B, L, V) float32, or with a task head
    (cfg.head) its float32 logits (llmjax.models.heads; a sequence head reads each row's last
    real token).

    positions default to 0..L-1 (while decoding: each row continuing from its cached tokens);
    packed rows pass per-document positions and segment_ids (id 0 = padding), which also
    confine attention to each document. attention_mask (B, L) (1 real, 0 right padding) is the
    one-document form of segment_ids. decode=True runs on the KV cache (collection "cache",
    initialised by `init(..., decode=True)` on a (B, cache_len) input)."""

    cfg: GPTConfig

    @nn.compact
    def __call__(self, tokens_BxL: jnp.ndarray, *, positions: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, attention_mask: jnp.ndarray | None = None,
                 deterministic: bool = True, decode: bool = False) -> jnp.ndarray:
        cfg = self.cfg
        B, L = tokens_BxL.shape
        if attention_mask is not None:
            if segment_ids is not None:
                raise ValueError("GPT got both attention_mask and segment_ids: pass one (attention_mask "
                                 "is the single-document form of segment_ids)")
            segment_ids = jnp.asarray(attention_mask).astype(jnp.int32)
        positions_BxL = token_positions(self, positions, B, L, decode)

        embed = Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, cfg.real_vocab_size,
                      name="embed")
        x_BxLxE = embed(tokens_BxL)
        if cfg.position == "learned":
            x_BxLxE = x_BxLxE + LearnedPositions(cfg.max_len, cfg.d_model, cfg.init_std, cfg.dtype,
                                                 name="pos_embed")(positions_BxL)
        elif cfg.position == "sinusoidal":
            x_BxLxE = x_BxLxE + sinusoidal_embedding(positions_BxL, cfg.d_model).astype(cfg.dtype)
        x_BxLxE = nn.Dropout(cfg.dropout)(x_BxLxE, deterministic=deterministic)
        x_BxLxE = nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

        x_BxLxE = run_layers(cfg, x_BxLxE, causal=True, deterministic=deterministic, decode=decode,
                             positions=positions_BxL, segment_ids=segment_ids)

        if cfg.norm_position == "pre":  # post-norm layers already end normalised
            x_BxLxE = make_norm(cfg.norm, cfg.dtype, name="final_norm", epsilon=cfg.norm_epsilon)(x_BxLxE)
        if cfg.head:
            dense = task_heads.projection(cfg.head, cfg.num_labels, cfg.readout_init_std, cfg.dtype,
                                          name=task_heads.HEAD_PARAMS[cfg.head])
            pooled_BxE = task_heads.last_real(x_BxLxE, segment_ids) if cfg.head == "sequence" else None
            return task_heads.apply(cfg.head, lambda x: cfg.readout(dense(x).astype(jnp.float32)),
                                    x_BxLxE, pooled_BxE, nn.Dropout(cfg.dropout), deterministic)
        if cfg.tie_embeddings:
            logits_BxLxV = embed.attend(x_BxLxE)
        else:
            logits_BxLxV = Unembed(cfg.vocab_size, cfg.readout_init_std, cfg.dtype, cfg.real_vocab_size,
                                   name="head")(x_BxLxE)
        logits_BxLxV = cfg.readout(logits_BxLxV.astype(jnp.float32))
        return nn.with_logical_constraint(logits_BxLxV, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))

    # ---------------------------------------------------------- the generation protocol

    def prefill(self, prompt_BxP: jnp.ndarray, prompt_mask_BxP: jnp.ndarray, *,
                max_new_tokens: int) -> jnp.ndarray:
        """Run left-padded prompts (mask 1 = token, 0 = padding) on a fresh KV cache with room for
        max_new_tokens more; the logits of each row's first new token (B, V). Under init it
        creates that cache."""
        B, P = prompt_BxP.shape
        self.cfg.check_generation(P, max_new_tokens)
        if self.is_initializing():  # the cache takes the length of the input it is created with
            return self(jnp.zeros((B, P + max_new_tokens), jnp.int32), decode=True)[:, -1]
        mask_BxP = jnp.asarray(prompt_mask_BxP, jnp.int32)
        positions_BxP = jnp.maximum(jnp.cumsum(mask_BxP, axis=1) - 1, 0)
        return self(prompt_BxP, positions=positions_BxP, segment_ids=mask_BxP, decode=True)[:, -1]

    def extend(self, token_B: jnp.ndarray) -> jnp.ndarray:
        """One new token per row after what the cache holds; the next logits (B, V)."""
        ones_Bx1 = jnp.ones((token_B.shape[0], 1), jnp.int32)
        return self(token_B[:, None], segment_ids=ones_Bx1, decode=True)[:, 0]

    def score(self, prompt_BxP: jnp.ndarray, prompt_mask_BxP: jnp.ndarray,
              continuation_BxN: jnp.ndarray) -> jnp.ndarray:
        """Without a cache: the logits predicting continuation[0..N-1] and the token after,
        (B, N+1, V), from one forward over prompt + continuation."""
        B, P = prompt_BxP.shape
        tokens_BxT = jnp.concatenate([prompt_BxP, continuation_BxN], axis=1)
        mask_BxT = jnp.concatenate([jnp.asarray(prompt_mask_BxP, jnp.int32),
                                    jnp.ones(continuation_BxN.shape, jnp.int32)], axis=1)
        positions_BxT = jnp.maximum(jnp.cumsum(mask_BxT, axis=1) - 1, 0)
        return self(tokens_BxT, positions=positions_BxT, segment_ids=mask_BxT)[:, P - 1:]


@register("gpt", GPTConfig)
def build_gpt(cfg: GPTConfig) -> GPT:
    return GPT(cfg)
