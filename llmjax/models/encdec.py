"""The encoder-decoder Transformer (Vaswani et al. 2017), wired from the shared blocks: a
bidirectional encoder stack, a causal decoder stack whose layers cross-attend to the encoder
output, shared or separate token tables, a tied or untied output head.

Packed rows carry segment and position ids on both sides, so no example attends across another
(decoder segment i sees only encoder segment i). With copy_attention the output is a
pointer-generator mixture (models/copy_head.py): the decoder may copy a source token. While
decoding (the generation protocol: prefill / extend / score), the encoder runs once and each
decoder layer caches the source's cross-attention keys and values on the first call.

Shape key: B batch, S source length, T target length, E embed width (d_model), V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.embed import Embed, Unembed, mask_padded_ids
from llmjax.blocks.norms import make_norm
from llmjax.blocks.positions import LearnedPositions, sinusoidal_embedding, token_positions
from llmjax.blocks.transformer import run_layers
from llmjax.config import RUNTIME, check_positive, fail
from llmjax.models.copy_head import CopyHead
from llmjax.models.registry import register
from llmjax.models.token_model import TokenModelConfig


@dataclasses.dataclass(frozen=True)
class EncDecConfig(TokenModelConfig):
    """config.model for name="encdec": the Transformer stack's keys (for both stacks) plus these."""
    tasks: ClassVar[tuple[str, ...]] = ("seq2seq",)  # the tasks (task.name) it can be trained on
    prompt_is_source: ClassVar[bool] = True  # a generation prompt is a whole source (it ends with EOS)
    name: str = "encdec"  # model family, looked up in llmjax.models.registry
    position: str = "sinusoidal"  # sinusoidal (the paper) | learned | rope | alibi
    num_decoder_layers: int = 0  # decoder layers (0 = num_layers, the encoder's)
    share_embeddings: bool = True  # one token table for source and target (a shared vocabulary)
    tie_embeddings: bool = True  # output logits through the target token table
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (the paper, 3.4)
    copy_attention: bool = False  # pointer-generator output: the decoder may copy source tokens
    start_id: int = dataclasses.field(default=0, metadata=RUNTIME)  # decoder start token (set by the task)

    def validate(self) -> None:
        super().validate()
        check_positive("model.num_decoder_layers", self.num_decoder_layers, allow_zero=True)
        if self.parametrization != "standard":
            fail("model.parametrization", self.parametrization, "the encoder-decoder's output head "
                 "is not wired for mup: use standard, or model.name='gpt'")

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers

    def decoder(self) -> EncDecConfig:
        """The decoder stack's config (its depth also scales its output-projection init)."""
        return dataclasses.replace(self, num_layers=self.decoder_layers)

    def max_prompt_len(self, max_new_tokens: int) -> int | None:
        return self.max_len

    def check_generation(self, prompt_len: int, max_new_tokens: int) -> None:
        for what, n in (("source length", prompt_len), ("max_new_tokens", max_new_tokens)):
            if n > self.max_len:
                raise ValueError(f"{what} {n} exceeds the model's max_len {self.max_len}: lower it")

    def summary(self) -> str:
        tables = "shared" if self.share_embeddings else "separate"
        return (f"{self.num_layers}+{self.decoder_layers} layers, vocab {self.vocab_size} ({tables} tables, "
                f"{'tied' if self.tie_embeddings else 'untied'} output), {self.position} positions")

    def matmul_params(self) -> tuple[int, int]:
        """(encoder, decoder + head) parameters that take part in matmuls per token."""
        d = self.d_model
        copy = 2 * d * d + d if self.copy_attention else 0  # its query and key projections, the gate
        decoder = self.decoder_layers * self.layer_matmul_params(cross_attention=True)
        return self.num_layers * self.layer_matmul_params(), decoder + d * self.vocab_size + copy

    def flops_per_row(self, source_len: int, target_len: int) -> float:
        """Training FLOPs (forward + backward) of one (source row, target row) pair: 6 N_matmul
        per token on each side, plus attention scores and mixing (12 n_layers d_model per key):
        encoder self-attention over S keys, decoder self-attention over T and cross over S.
        The cross-attention key/value projections act on source tokens but are counted per
        target token (in the decoder's N), an overcount of at most 2 d^2 per layer when S != T;
        so is copy attention's key projection. Its scores cost 6 d per source position."""
        enc, dec = self.matmul_params()
        d = self.d_model
        encoder = source_len * (6.0 * enc + 12.0 * self.num_layers * d * source_len)
        decoder = target_len * (6.0 * dec + 12.0 * self.decoder_layers * d * (target_len + source_len))
        copy = target_len * 6.0 * d * source_len if self.copy_attention else 0.0  # scores; no mixing matmul
        return encoder + decoder + copy

    def flops_per_token(self, seq_len: int) -> float:
        """Per token of a pair of rows both seq_len long (the family protocol's form)."""
        return self.flops_per_row(seq_len, seq_len) / (2 * seq_len)


class _Stack(nn.Module):
    """Positions, dropout, the layers, the final norm: the encoder (bidirectional) or the
    decoder (causal, cross-attending to the encoder)."""

    cfg: EncDecConfig
    is_decoder: bool

    @nn.compact
    def __call__(self, x_BxLxE: jnp.ndarray, *, positions: jnp.ndarray | None,
                 segment_ids: jnp.ndarray | None, encoded_BxSxE: jnp.ndarray | None = None,
                 encoded_segment_ids: jnp.ndarray | None = None, deterministic: bool = True,
                 decode: bool = False) -> jnp.ndarray:
        cfg = self.cfg
        B, L, E = x_BxLxE.shape
        positions_BxL = token_positions(self, positions, B, L, decode)
        if cfg.position == "learned":
            x_BxLxE = x_BxLxE + LearnedPositions(cfg.max_len, E, cfg.init_std, cfg.dtype,
                                                 name="pos_embed")(positions_BxL)
        elif cfg.position == "sinusoidal":
            x_BxLxE = x_BxLxE + sinusoidal_embedding(positions_BxL, E).astype(cfg.dtype)
        x_BxLxE = nn.Dropout(cfg.dropout)(x_BxLxE, deterministic=deterministic)
        x_BxLxE = run_layers(cfg, x_BxLxE, causal=self.is_decoder, cross_attention=self.is_decoder,
                             deterministic=deterministic, decode=decode, encoded_BxSxE=encoded_BxSxE,
                             positions=positions_BxL, segment_ids=segment_ids,
                             encoded_segment_ids=encoded_segment_ids)
        if cfg.norm_position == "pre":
            x_BxLxE = make_norm(cfg.norm, cfg.dtype, name="final_norm", epsilon=cfg.norm_epsilon)(x_BxLxE)
        return x_BxLxE


class EncoderDecoder(nn.Module):
    """(source (B, S), decoder inputs (B, T)) -> next-token logits (B, T, V) float32.

    Segment ids (0 = padding) and positions default to one unpadded example per row."""

    cfg: EncDecConfig

    def setup(self):
        cfg = self.cfg
        self.embed = Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, cfg.real_vocab_size)
        self.target_embed = (self.embed if cfg.share_embeddings else
                             Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, cfg.real_vocab_size))
        self.encoder = _Stack(cfg, is_decoder=False)
        self.decoder = _Stack(cfg.decoder(), is_decoder=True)
        if not cfg.tie_embeddings:
            self.head = Unembed(cfg.vocab_size, cfg.init_std, cfg.dtype, cfg.real_vocab_size)
        if cfg.copy_attention:
            self.copy = CopyHead(cfg.init_std, cfg.dtype)

    def _embed(self, table: Embed, tokens_BxL: jnp.ndarray) -> jnp.ndarray:
        x_BxLxE = table(tokens_BxL)
        return x_BxLxE * math.sqrt(self.cfg.d_model) if self.cfg.scale_embeddings else x_BxLxE

    def encode(self, source_BxS: jnp.ndarray, *, source_segment_ids: jnp.ndarray | None = None,
               source_positions: jnp.ndarray | None = None, deterministic: bool = True) -> jnp.ndarray:
        """The encoder output (B, S, E)."""
        return self.encoder(self._embed(self.embed, source_BxS), positions=source_positions,
                            segment_ids=source_segment_ids, deterministic=deterministic)

    def decode(self, decoder_inputs_BxT: jnp.ndarray, encoded_BxSxE: jnp.ndarray | None, *,
               source_BxS: jnp.ndarray | None = None, source_segment_ids: jnp.ndarray | None = None,
               target_segment_ids: jnp.ndarray | None = None, target_positions: jnp.ndarray | None = None,
               deterministic: bool = True, decode: bool = False,
               generation_logits: bool = False) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
        """Logits (B, T, V) float32 (log-probabilities with copy_attention, which also needs the
        source ids); while decoding, encoded and source may be None after the first call. With
        generation_logits, also the vocabulary logits before the copy mixture (label smoothing's
        uniform term goes on them: training/objectives.py)."""
        y_BxTxE = self.decoder(self._embed(self.target_embed, decoder_inputs_BxT), positions=target_positions,
                               segment_ids=target_segment_ids, encoded_BxSxE=encoded_BxSxE,
                               encoded_segment_ids=source_segment_ids, deterministic=deterministic,
                               decode=decode)
        logits_BxTxV = self.target_embed.attend(y_BxTxE) if self.cfg.tie_embeddings else self.head(y_BxTxE)
        logits_BxTxV = vocab_BxTxV = logits_BxTxV.astype(jnp.float32)
        if self.cfg.copy_attention:
            logits_BxTxV = self.copy(y_BxTxE, logits_BxTxV, encoded_BxSxE=encoded_BxSxE, source_BxS=source_BxS,
                                     source_segment_ids=source_segment_ids,
                                     target_segment_ids=target_segment_ids, decode=decode)
            logits_BxTxV = mask_padded_ids(logits_BxTxV, self.cfg.real_vocab_size)  # log(0 + tiny) is not dead
        logits_BxTxV = nn.with_logical_constraint(logits_BxTxV, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))
        return (logits_BxTxV, vocab_BxTxV) if generation_logits else logits_BxTxV

    def __call__(self, source_BxS: jnp.ndarray, decoder_inputs_BxT: jnp.ndarray, *,
                 source_segment_ids: jnp.ndarray | None = None, source_positions: jnp.ndarray | None = None,
                 target_segment_ids: jnp.ndarray | None = None, target_positions: jnp.ndarray | None = None,
                 deterministic: bool = True,
                 generation_logits: bool = False) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
        encoded_BxSxE = self.encode(source_BxS, source_segment_ids=source_segment_ids,
                                    source_positions=source_positions, deterministic=deterministic)
        return self.decode(decoder_inputs_BxT, encoded_BxSxE, source_BxS=source_BxS,
                           source_segment_ids=source_segment_ids,
                           target_segment_ids=target_segment_ids, target_positions=target_positions,
                           deterministic=deterministic, generation_logits=generation_logits)

    # ---------------------------------------------------------- the generation protocol

    def _encode_prompt(self, source_BxS: jnp.ndarray, mask_BxS: jnp.ndarray) -> jnp.ndarray:
        mask_BxS = jnp.asarray(mask_BxS, jnp.int32)
        positions_BxS = jnp.maximum(jnp.cumsum(mask_BxS, axis=1) - 1, 0)
        return self.encode(source_BxS, source_segment_ids=mask_BxS, source_positions=positions_BxS)

    def prefill(self, source_BxS: jnp.ndarray, mask_BxS: jnp.ndarray, *, max_new_tokens: int) -> jnp.ndarray:
        """Encode the (left-padded) sources once; feed the start token onto a fresh decoder cache
        with room for max_new_tokens; the logits of the first target token (B, V)."""
        B, S = source_BxS.shape
        self.cfg.check_generation(S, max_new_tokens)
        encoded_BxSxE = self._encode_prompt(source_BxS, mask_BxS)
        mask_BxS = jnp.asarray(mask_BxS, jnp.int32)
        if self.is_initializing():  # the decoder cache takes the length it is created with
            inputs_BxT = jnp.zeros((B, max_new_tokens), jnp.int32)
            return self.decode(inputs_BxT, encoded_BxSxE, source_BxS=source_BxS, source_segment_ids=mask_BxS,
                               decode=True)[:, -1]
        start_Bx1 = jnp.full((B, 1), self.cfg.start_id, jnp.int32)
        return self.decode(start_Bx1, encoded_BxSxE, source_BxS=source_BxS, source_segment_ids=mask_BxS,
                           decode=True)[:, 0]

    def extend(self, token_B: jnp.ndarray) -> jnp.ndarray:
        """One target token per row on the cache (source keys and values cached); next logits (B, V)."""
        return self.decode(token_B[:, None], None, decode=True)[:, 0]

    def score(self, source_BxS: jnp.ndarray, mask_BxS: jnp.ndarray, continuation_BxN: jnp.ndarray) -> jnp.ndarray:
        """Without a cache: logits predicting continuation[0..N-1] and the token after (B, N+1, V)."""
        B = source_BxS.shape[0]
        encoded_BxSxE = self._encode_prompt(source_BxS, mask_BxS)
        inputs_BxT = jnp.concatenate([jnp.full((B, 1), self.cfg.start_id, jnp.int32),
                                      jnp.asarray(continuation_BxN, jnp.int32)], axis=1)
        return self.decode(inputs_BxT, encoded_BxSxE, source_BxS=source_BxS,
                           source_segment_ids=jnp.asarray(mask_BxS, jnp.int32))


@register("encdec", EncDecConfig)
def build_encdec(cfg: EncDecConfig) -> EncoderDecoder:
    return EncoderDecoder(cfg)
