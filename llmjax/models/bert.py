"""BERT: a bidirectional Transformer encoder (Devlin et al. 2019) wired from the shared blocks,
with its pretraining heads (masked LM + next-sentence prediction) or a task head
(llmjax.models.heads: sequence on the pooled [CLS], token, span).

The defaults are BERT's own choices (post-LN, erf GELU, LayerNorm eps 1e-12, learned positions,
dropout 0.1, two token types) at BERT-Small's size (Turc et al. 2019: 4 layers, width 512,
8 heads), so a Hugging Face BERT maps onto it parameter for parameter. Parameter tree:
  embeddings/{token/embedding, token_type/embedding, position/embedding, norm}
  layer_0..layer_{n-1} (or layers, scanned), final_norm (pre-LN only), pooler
  pretraining: mlm_head/{transform, norm, output_bias}, nsp_head   task heads: classifier (with
  the pooler), token_classifier, qa_outputs
The encoder and pooler are the same in every mode, so fine-tuning warm-starts by path.

Shape key: B batch, L length, P predicted (masked) positions per row, E embed width (d_model),
V padded vocabulary, T token types, C classes (num_labels), K a task head's outputs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.attention import Projection
from llmjax.blocks.embed import Embed
from llmjax.blocks.norms import make_norm
from llmjax.blocks.positions import LearnedPositions, sinusoidal_embedding
from llmjax.blocks.transformer import run_layers
from llmjax.config import check_positive, fail
from llmjax.models import heads as task_heads
from llmjax.models.registry import register
from llmjax.models.token_model import TokenModelConfig


@dataclasses.dataclass(frozen=True)
class BertConfig(TokenModelConfig):
    """config.model for name="bert": the Transformer stack's keys (BERT's defaults) plus these."""
    tasks: ClassVar[tuple[str, ...]] = ("mlm",)  # the tasks (task.name) it trains on with its own heads
    heads: ClassVar[tuple[str, ...]] = task_heads.HEADS  # the task heads it serves
    num_layers: int = 4  # transformer layers (BERT-Small)
    d_model: int = 512  # residual width
    num_heads: int = 8  # query heads; d_model must be divisible by it
    mlp_dim: int = 2048  # hidden width of the feed-forward block
    ffn: str = "gelu_exact"  # BERT's erf GELU (Hugging Face "gelu")
    norm_position: str = "post"  # BERT normalises after each residual sum
    norm_epsilon: float = 1e-12  # BERT's LayerNorm epsilon
    dropout: float = 0.1  # residual, embedding and classifier dropout
    attention_dropout: float = 0.1  # dropout on attention probabilities
    name: str = "bert"  # model family, looked up in llmjax.models.registry
    max_len: int = 512  # learned position table length (0 = data.seq_len)
    type_vocab_size: int = 2  # token types (segments A/B)
    embed_init: str = ""  # a Word2Vec run's embeddings.npy (this run's tokenizer, width d_model) the token table starts from (llmjax.training.embed_init)

    def validate(self) -> None:
        super().validate()
        check_positive("model.type_vocab_size", self.type_vocab_size)
        if self.parametrization != "standard":
            fail("model.parametrization", self.parametrization, "BERT's MLM transform, pooler and "
                 "tied MLM head are not wired for mup: use standard, or model.name='gpt'")

    def summary(self) -> str:
        heads = task_heads.describe(self.head, self.num_labels) if self.head else "MLM + NSP heads"
        return (f"vocab {self.vocab_size}, {self.position} positions, "
                f"{self.attention_backend} attention, {heads}")

    def matmul_params(self) -> int:
        """Parameters in the encoder's matmuls (attention and FFN kernels) and a token or span
        head's kernel. The MLM head is counted per predicted token (mlm_head_flops); the pooler,
        NSP and a sequence head act once per row and are left out (under 1/L of a layer)."""
        return (self.num_layers * self.layer_matmul_params()
                + task_heads.per_token_params(self.head, self.num_labels, self.d_model))

    def flops_per_token(self, seq_len: int) -> float:
        """Encoder training FLOPs per token, forward + backward: 6 N_matmul + 12 n_layers d_model T
        (every query sees all T keys: no causal half to discount)."""
        return 6.0 * self.matmul_params() + 12.0 * self.num_layers * self.d_model * seq_len

    def mlm_head_flops(self) -> float:
        """Training FLOPs per predicted token of the MLM head: 6 (d*d + d*V) (transform + tied
        output projection); the task multiplies by the number of masked positions."""
        d = self.d_model
        return 6.0 * (d * d + d * self.vocab_size)


class BertEmbeddings(nn.Module):
    """token + token type + position (learned or sinusoidal; rope/alibi act in attention), then
    the norm and dropout. `attend` is the tied output projection of the MLM head."""

    cfg: BertConfig

    def setup(self):
        cfg = self.cfg
        self.token = Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, cfg.real_vocab_size)
        # An Embed like the others, so every lookup table is an `embedding` leaf (the decay mask
        # and the embedding count go by that name); its two rows are never split (TYPE_VOCAB).
        self.token_type = Embed(cfg.type_vocab_size, cfg.d_model, cfg.init_std, cfg.dtype,
                                vocab_axis=sh.TYPE_VOCAB)
        if cfg.position == "learned":
            self.position = LearnedPositions(cfg.max_len, cfg.d_model, cfg.init_std, cfg.dtype)
        self.norm = make_norm(cfg.norm, cfg.dtype, epsilon=cfg.norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout)

    def __call__(self, tokens_BxL: jax.Array, token_types_BxL: jax.Array, positions_BxL: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        x_BxLxE = self.token(tokens_BxL)
        x_BxLxE = x_BxLxE + self.token_type(token_types_BxL)
        if cfg.position == "learned":
            x_BxLxE = x_BxLxE + self.position(positions_BxL)
        elif cfg.position == "sinusoidal":
            x_BxLxE = x_BxLxE + sinusoidal_embedding(positions_BxL, cfg.d_model).astype(cfg.dtype)
        x_BxLxE = self.dropout(self.norm(x_BxLxE), deterministic=deterministic)
        return nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

    def attend(self, x_BxLxE: jax.Array) -> jax.Array:
        return self.token.attend(x_BxLxE)


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense E->E, GELU, norm, then the tied projection onto the token
    table plus an output bias (V,); float32 logits."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x_BxPxE: jax.Array, attend: Callable[[jax.Array], jax.Array]) -> jax.Array:
        cfg = self.cfg
        h_BxPxE = Projection((cfg.d_model,), (sh.EMBED, sh.EMBED_OUT), init_std=cfg.init_std,
                             dtype=cfg.dtype, name="transform")(x_BxPxE)
        h_BxPxE = jax.nn.gelu(h_BxPxE, approximate=cfg.ffn == "gelu")  # the stack's GELU kind
        h_BxPxE = make_norm(cfg.norm, cfg.dtype, name="norm", epsilon=cfg.norm_epsilon)(h_BxPxE)
        bias_V = self.param("output_bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), (sh.VOCAB,)),
                            (cfg.vocab_size,), jnp.float32)
        logits_BxPxV = attend(h_BxPxE) + bias_V
        return nn.with_logical_constraint(logits_BxPxV, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))


class BERT(nn.Module):
    """tokens (B, L) int32 -> (mlm_logits, nsp_logits) without a task head, else the head's
    logits (llmjax.models.heads: (B, C), (B, L, C) or (B, L, 2)); all float32.

    token_types default to 0; attention_mask (B, L) is 1 on real tokens and 0 on padding (it
    becomes the attention's segment ids, so padding is never attended and padded rows stay
    finite); positions default to 0..L-1. mlm_logits are (B, P, V) at masked_positions (B, P)
    when given (gathered before the head: only predicted positions pay for it), else (B, L, V)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, *, token_types: jax.Array | None = None,
                 attention_mask: jax.Array | None = None, positions: jax.Array | None = None,
                 masked_positions: jax.Array | None = None,
                 deterministic: bool = True) -> jax.Array | tuple[jax.Array, jax.Array]:
        cfg = self.cfg
        B, L = tokens_BxL.shape
        if positions is None:
            positions = jnp.arange(L, dtype=jnp.int32)[None]
        positions_BxL = jnp.broadcast_to(jnp.asarray(positions, jnp.int32), (B, L))
        types_BxL = (jnp.zeros((B, L), jnp.int32) if token_types is None
                     else jnp.asarray(token_types, jnp.int32))
        segments_BxL = None if attention_mask is None else jnp.asarray(attention_mask).astype(jnp.int32)

        embeddings = BertEmbeddings(cfg, name="embeddings")
        x_BxLxE = embeddings(tokens_BxL, types_BxL, positions_BxL, deterministic=deterministic)
        x_BxLxE = run_layers(cfg, x_BxLxE, causal=False, deterministic=deterministic,
                             positions=positions_BxL, segment_ids=segments_BxL)
        if cfg.norm_position == "pre":  # post-norm layers already end normalised
            x_BxLxE = make_norm(cfg.norm, cfg.dtype, name="final_norm", epsilon=cfg.norm_epsilon)(x_BxLxE)

        if cfg.head:  # a token or span head reads every position: no pooler (as Hugging Face's)
            pooled_BxE = None
            if cfg.head == "sequence":
                pooled_BxE = nn.Dropout(cfg.dropout)(self._pool(x_BxLxE), deterministic=deterministic)
            dense = task_heads.projection(cfg.head, cfg.num_labels, cfg.init_std, cfg.dtype,
                                          name=task_heads.HEAD_PARAMS[cfg.head])
            return task_heads.apply(cfg.head, dense, x_BxLxE, pooled_BxE, nn.Dropout(cfg.dropout),
                                    deterministic)
        pooled_BxE = self._pool(x_BxLxE)
        if masked_positions is not None:
            index_BxPx1 = jnp.asarray(masked_positions, jnp.int32)[..., None]
            x_BxLxE = jnp.take_along_axis(x_BxLxE, index_BxPx1, axis=1)  # now (B, P, E)
        mlm_logits = MLMHead(cfg, name="mlm_head")(x_BxLxE, embeddings.attend)
        nsp_logits_Bx2 = Projection((2,), (sh.EMBED, sh.LABELS), init_std=cfg.init_std, dtype=cfg.dtype,
                                    name="nsp_head")(pooled_BxE).astype(jnp.float32)
        return mlm_logits, nn.with_logical_constraint(nsp_logits_Bx2, (sh.BATCH, None))

    def _pool(self, x_BxLxE: jax.Array) -> jax.Array:
        """BERT's pooler: tanh of a dense layer on the [CLS] position (NSP and sequence heads)."""
        cfg = self.cfg
        pooled_BxE = jnp.tanh(Projection((cfg.d_model,), (sh.EMBED, sh.EMBED_OUT), init_std=cfg.init_std,
                                         dtype=cfg.dtype, name="pooler")(x_BxLxE[:, 0]))
        return nn.with_logical_constraint(pooled_BxE, (sh.BATCH, sh.ACT_EMBED))


@register("bert", BertConfig)
def build_bert(cfg: BertConfig) -> BERT:
    return BERT(cfg)
