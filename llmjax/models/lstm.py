"""LSTM: a stacked recurrent language model (Hochreiter & Schmidhuber 1997; the regularised
LM of Zaremba et al. 2014), the baseline of Kaplan et al. 2020 fig. 7 (per-token loss by
context position: LSTMs stop improving after ~100 tokens, Transformers do not).

`LSTMConfig` holds the family's keys, checks, runtime finalisation and cost arithmetic; `LSTM`
runs its cell (flax OptimizedLSTMCell's parameters and arithmetic, the forget gate's bias
starting at model.forget_bias) layer by layer, each scanned over time, and serves the generation
protocol (prefill / extend / score) on a cache of each layer's state (c, h).

Shape key: B batch, L length, P prompt length, N continuation length, E embed width (d_model),
H LSTM width (hidden), I a layer's input width (E for the first, H after), V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.recurrent import DenseParams

from llmjax import sharding as sh
from llmjax.blocks.attention import Projection
from llmjax.blocks.embed import Embed, Unembed
from llmjax.config import RUNTIME, DataConfig, check_choice, check_fraction, check_positive, fail
from llmjax.models import heads as task_heads
from llmjax.models.registry import register
from llmjax.models.token_model import pad_vocab

_FULL, _PREFILL, _EXTEND = "full", "prefill", "extend"  # how a layer treats its cached state
POOLS = {"mean": task_heads.mean_real, "last": task_heads.last_real}  # what a sequence head reads (model.pool)


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """config.model for name="lstm". No positions, heads or attention: order lives in the state."""
    tasks: ClassVar[tuple[str, ...]] = ("lm",)  # the tasks (task.name) it trains on with its own head
    heads: ClassVar[tuple[str, ...]] = task_heads.HEADS  # the task heads it serves (sequence: model.pool of the states)
    inputs: ClassVar[tuple[str, ...]] = ("segment_ids",)  # optional batch inputs it takes
    prompt_is_source: ClassVar[bool] = False  # a generation prompt is a prefix to continue
    name: str = "lstm"  # model family, looked up in llmjax.models.registry
    num_layers: int = 2  # stacked LSTM layers
    d_model: int = 256  # token embedding width
    hidden: int = 0  # LSTM width (units per layer; 0 = d_model)
    dropout: float = 0.0  # dropout on the embeddings and on every layer's output (not the recurrence)
    pool: str = "mean"  # what a sequence head reads: mean (of the real positions' states) | last (the last real state, as GPT's)
    forget_bias: float = 1.0  # the forget gate's initial bias (Jozefowicz et al. 2015; 0: the state halves every step at first)
    tie_embeddings: bool = True  # output head shares the token embedding (via a hidden -> d_model projection when they differ)
    vocab_multiple: int = 64  # pad the vocabulary to a multiple of this (fast matmuls)
    init_std: float = 0.02  # std of the normal initialiser of the embedding, head and projection
    embed_init: str = ""  # a Word2Vec run's embeddings.npy (this run's tokenizer, width d_model) the token table starts from (llmjax.training.embed_init)
    vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)  # padded, from the tokenizer
    # the tokenizer's own ids: the logits of ids >= it (the padding) are masked (0 = none padded)
    real_vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)
    dtype: str = dataclasses.field(default="float32", metadata=RUNTIME)  # compute dtype (train.dtype)
    head: str = dataclasses.field(default="", metadata=RUNTIME)  # a task head (llmjax.models.heads); '' = the LM head
    num_labels: int = dataclasses.field(default=0, metadata=RUNTIME)  # classes of a sequence or token head

    @property
    def width(self) -> int:
        """Units per LSTM layer."""
        return self.hidden or self.d_model

    @property
    def projects(self) -> bool:
        """A tied head on a state wider or narrower than the embedding needs a projection."""
        return self.tie_embeddings and self.width != self.d_model

    def validate(self) -> None:
        """One-line ConfigError for the first bad key; cheap, before any data or compile."""
        for key in ("num_layers", "d_model", "vocab_multiple"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.hidden", self.hidden, allow_zero=True)
        check_fraction("model.dropout", self.dropout)
        check_choice("model.pool", self.pool, tuple(POOLS))
        if self.init_std <= 0:
            fail("model.init_std", self.init_std, "must be a positive standard deviation")

    def check_run(self, data: DataConfig, mesh_sizes: tuple[int, int, int] | None) -> None:
        """fsdp splits the input side of every kernel: the embedding width and the LSTM width."""
        if mesh_sizes is None:
            return
        fsdp = mesh_sizes[1]
        for key, size in (("d_model", self.d_model), ("hidden", self.width)):
            if size % fsdp:
                fail("mesh.fsdp", fsdp, f"must divide config.model.{key}={size} (the LSTM's widths)")

    def max_prompt_len(self, max_new_tokens: int) -> int | None:
        return None  # the recurrent state never grows

    def check_generation(self, prompt_len: int, max_new_tokens: int) -> None:
        """Any length fits."""

    def finalize(self, vocab_size: int, max_len: int, platform: str, dtype: str) -> LSTMConfig:
        """The runtime config: vocabulary padded to vocab_multiple (the real size kept for the
        mask), the compute dtype. max_len and platform do not matter: no positional table, no
        attention backend."""
        return dataclasses.replace(self, vocab_size=pad_vocab(vocab_size, self.vocab_multiple),
                                   real_vocab_size=vocab_size, dtype=dtype)

    def summary(self) -> str:
        if self.head:
            return (f"vocab {self.vocab_size}, {self.num_layers} LSTM layers of {self.width} units, "
                    f"{task_heads.describe(self.head, self.num_labels)}")
        head = "untied head" if not self.tie_embeddings else (
            f"tied head via a {self.width} -> {self.d_model} projection" if self.projects else "tied head")
        return f"vocab {self.vocab_size}, {self.num_layers} LSTM layers of {self.width} units, {head}"

    def matmul_params(self) -> int:
        """Parameters that take part in matmuls. Layer l maps [x_t, h_{t-1}] (I_l + H) to the 4
        gates i, f, g, o of H units each: 4 (I_l + H) H, with I_0 = d_model and I_l = H after.
        Head: the token table once (tied, plus H d_model for the projection when H != d_model)
        or the untied H x V kernel; a task head's per-token kernel instead. Excluded: the input
        lookup, biases."""
        E, H, V = self.d_model, self.width, self.vocab_size
        layers = 4 * (E + H) * H + (self.num_layers - 1) * 4 * (H + H) * H
        if self.head:
            return layers + task_heads.per_token_params(self.head, self.num_labels, H)
        head = (H * E if self.projects else 0) + (E if self.tie_embeddings else H) * V
        return layers + head

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward + backward: 6 N_matmul (2 per multiply-add forward,
        twice that backward). No seq_len term: a step costs the same at every position."""
        del seq_len
        return 6.0 * self.matmul_params()


def _kernel_init(init: nn.initializers.Initializer) -> nn.initializers.Initializer:
    """A gate kernel (input or recurrent side, units): fsdp splits the input side."""
    return nn.with_logical_partitioning(init, (sh.EMBED, sh.RNN_HIDDEN))


class _Cell(nn.Module):
    """The LSTM cell, parameters as flax's OptimizedLSTMCell names them (ii..io input kernels;
    hi..ho recurrent kernels with the biases), with the forget gate's bias starting at
    forget_bias (Gers et al. 2000; Jozefowicz et al. 2015; Keras's unit_forget_bias): at 0 the
    state halves every step, so a sequence head reading the last state gets no gradient from
    tokens more than a few steps back (measured: a classifier at chance after 400 steps)."""

    width: int
    dtype: str
    forget_bias: float

    @nn.compact
    def __call__(self, carry, x_BxI):
        c_BxH, h_BxH = carry
        kernels_i, kernels_h, biases = [], [], []
        for gate in "ifgo":
            kernel, _ = DenseParams(self.width, use_bias=False, kernel_init=_kernel_init(nn.initializers.lecun_normal()),
                                    name=f"i{gate}")(x_BxI)
            kernels_i.append(kernel)
            kernel, bias = DenseParams(
                self.width, use_bias=True, kernel_init=_kernel_init(nn.initializers.orthogonal()),
                bias_init=nn.with_logical_partitioning(
                    nn.initializers.constant(self.forget_bias if gate == "f" else 0.0), (sh.RNN_HIDDEN,)),
                name=f"h{gate}")(h_BxH)
            kernels_h.append(kernel)
            biases.append(bias)
        x, h, w_i, w_h, b = (jnp.asarray(a, self.dtype) for a in (
            x_BxI, h_BxH, jnp.concatenate(kernels_i, -1), jnp.concatenate(kernels_h, -1),
            jnp.concatenate(biases, -1)))
        i, f, g, o = jnp.split(x @ w_i + h @ w_h + b, 4, axis=-1)
        c_BxH = nn.sigmoid(f) * c_BxH + nn.sigmoid(i) * jnp.tanh(g)
        h_BxH = nn.sigmoid(o) * jnp.tanh(c_BxH)
        return (c_BxH, h_BxH), h_BxH


class _Step(nn.Module):
    """One time step of one layer, with the state reset of packed rows: the carry is zeroed
    before a token that starts a new segment, and after a padding token (segment 0)."""

    width: int
    dtype: str
    forget_bias: float

    @nn.compact
    def __call__(self, carry, xs):
        x_BxI, start_B, real_B = xs
        keep_Bx1 = ~start_B[:, None]
        carry = tuple(jnp.where(keep_Bx1, s_BxH, 0) for s_BxH in carry)
        carry, _ = _Cell(self.width, self.dtype, self.forget_bias, name="cell")(carry, x_BxI)
        c_BxH, h_BxH = (jnp.where(real_B[:, None], s_BxH, 0) for s_BxH in carry)
        return (c_BxH, h_BxH), h_BxH


class LSTMLayer(nn.Module):
    """One LSTM layer over a sequence. mode "full" starts from zeros; "prefill" too, and keeps
    its final state (c, h) in the "cache" collection; "extend" continues from that state."""

    width: int
    dtype: str
    forget_bias: float

    @nn.compact
    def __call__(self, x_BxLxI: jnp.ndarray, start_BxL: jnp.ndarray, real_BxL: jnp.ndarray,
                 mode: str = _FULL) -> jnp.ndarray:
        B = x_BxLxI.shape[0]
        zeros = lambda: jnp.zeros((B, self.width), jnp.float32)  # noqa: E731  (state in float32)
        carry = (zeros(), zeros())
        if mode != _FULL:
            filled = self.has_variable("cache", "c")  # False while init creates the cache
            c, h = self.variable("cache", "c", zeros), self.variable("cache", "h", zeros)
            if mode == _EXTEND:
                carry = (c.value, h.value)
        scan = nn.scan(_Step, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=1, out_axes=1)
        carry, h_BxLxH = scan(self.width, self.dtype, self.forget_bias, name="scan")(carry, (x_BxLxI, start_BxL, real_BxL))
        if mode != _FULL and filled:
            c.value, h.value = carry
        return h_BxLxH


class LSTM(nn.Module):
    """tokens (B, L) int32 -> next-token logits (B, L, V) float32, or with a task head (cfg.head)
    its float32 logits (llmjax.models.heads; a sequence head reads each row's last real state).

    segment_ids (B, L) (0 = padding, k > 0 = document k of a packed row) reset the state at each
    document start and keep it at zero over padding, so packed documents never see each other
    and left padding leaves the first real token's state as if the padding were absent.
    Generation: prefill / extend on the cached state, score in one forward."""

    cfg: LSTMConfig

    def setup(self):
        cfg = self.cfg
        self.embed = Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, cfg.real_vocab_size)
        self.layers = [LSTMLayer(cfg.width, cfg.dtype, cfg.forget_bias) for _ in range(cfg.num_layers)]
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.head:  # named as in every family (heads.HEAD_PARAMS), so warm starts match by path
            setattr(self, task_heads.HEAD_PARAMS[cfg.head],
                    task_heads.projection(cfg.head, cfg.num_labels, cfg.init_std, cfg.dtype))
        if cfg.projects:
            self.project = Projection((cfg.d_model,), (sh.RNN_HIDDEN, sh.EMBED), init_std=cfg.init_std,
                                      use_bias=False, dtype=cfg.dtype)
        if not cfg.tie_embeddings:
            self.head = Unembed(cfg.vocab_size, cfg.init_std, cfg.dtype, cfg.real_vocab_size)

    def __call__(self, tokens_BxL: jnp.ndarray, *, segment_ids: jnp.ndarray | None = None,
                 attention_mask: jnp.ndarray | None = None, deterministic: bool = True) -> jnp.ndarray:
        """attention_mask (1 real, 0 right padding) is the one-document form of segment_ids."""
        mask = attention_mask if attention_mask is not None else segment_ids
        segment_ids = jnp.ones_like(tokens_BxL) if mask is None else mask
        h_BxLxH = self._hidden(tokens_BxL, segment_ids, _FULL, deterministic)
        head = self.cfg.head
        if not head:
            return self._logits(h_BxLxH)
        pooled_BxH = POOLS[self.cfg.pool](h_BxLxH, segment_ids) if head == "sequence" else None
        return task_heads.apply(head, getattr(self, task_heads.HEAD_PARAMS[head]), h_BxLxH, pooled_BxH,
                                self.drop, deterministic)

    def prefill(self, prompt_BxP: jnp.ndarray, prompt_mask_BxP: jnp.ndarray, *,
                max_new_tokens: int) -> jnp.ndarray:
        """Run the left-padded prompts (mask 1 = real), cache each layer's final state; the
        logits (B, V) of the first new token. max_new_tokens is unused: the state never grows."""
        del max_new_tokens
        h_BxPxH = self._hidden(prompt_BxP, prompt_mask_BxP, _PREFILL, deterministic=True)
        return self._logits(h_BxPxH[:, -1:])[:, 0]

    def extend(self, token_B: jnp.ndarray) -> jnp.ndarray:
        """One more token per row after the cached state; the logits (B, V) of the next one."""
        token_Bx1 = jnp.asarray(token_B)[:, None]
        h_Bx1xH = self._hidden(token_Bx1, jnp.ones_like(token_Bx1), _EXTEND, deterministic=True)
        return self._logits(h_Bx1xH)[:, 0]

    def score(self, prompt_BxP: jnp.ndarray, prompt_mask_BxP: jnp.ndarray,
              continuation_BxN: jnp.ndarray) -> jnp.ndarray:
        """Logits (B, N+1, V) predicting continuation[0..N-1] and the token after it, from one
        forward over prompt + continuation (no cache)."""
        P = prompt_BxP.shape[1]
        tokens = jnp.concatenate([prompt_BxP, continuation_BxN], axis=1)
        segments = jnp.concatenate([prompt_mask_BxP, jnp.ones_like(continuation_BxN)], axis=1)
        h_BxLxH = self._hidden(tokens, segments, _FULL, deterministic=True)
        return self._logits(h_BxLxH[:, P - 1:])

    def _hidden(self, tokens_BxL: jnp.ndarray, segment_ids_BxL: jnp.ndarray, mode: str,
                deterministic: bool) -> jnp.ndarray:
        """The top layer's outputs (B, L, H), dropout after the embedding and after each layer."""
        seg_BxL = jnp.asarray(segment_ids_BxL, jnp.int32)
        start_BxL = jnp.concatenate([jnp.zeros_like(seg_BxL[:, :1], bool),
                                     seg_BxL[:, 1:] != seg_BxL[:, :-1]], axis=1)
        real_BxL = seg_BxL != 0
        x_BxLxI = self.drop(self.embed(tokens_BxL), deterministic=deterministic)
        for layer in self.layers:
            x_BxLxI = self.drop(layer(x_BxLxI, start_BxL, real_BxL, mode), deterministic=deterministic)
            x_BxLxI = nn.with_logical_constraint(x_BxLxI, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))
        return x_BxLxI

    def _logits(self, h_BxLxH: jnp.ndarray) -> jnp.ndarray:
        if not self.cfg.tie_embeddings:
            return self.head(h_BxLxH)
        x_BxLxE = self.project(h_BxLxH) if self.cfg.projects else h_BxLxH
        return self.embed.attend(x_BxLxE)


@register("lstm", LSTMConfig)
def build_lstm(cfg: LSTMConfig) -> LSTM:
    return LSTM(cfg)
