"""The Transformer layer and its stack: self-attention, optional cross-attention, feed-forward,
each a residual sublayer with dropout, normalised before ("pre", GPT-2) or after ("post",
Vaswani et al.).

The same layer serves a decoder-only LM (causal, no cross), an encoder (not causal) and an
encoder-decoder's decoder (causal + cross-attention onto the encoder output). `TransformerConfig`
holds every key of the stack; a model family's config extends it with its own keys, and the
models layer checks them (llmjax.models.token_model): blocks never import the config layer.

`deterministic` and `decode` are module attributes, not call arguments: `nn.remat` then needs
no static argument positions, and the call takes only arrays, by keyword, so adding an argument
cannot shift anything. `run_layers` applies the stack unrolled (parameters `layer_0`,
`layer_1`, ...) or scanned (`nn.scan`: one compiled layer, parameters stacked under `layers`
with a leading `layers` axis). The two forms have different parameter trees, so `scan_layers`
is part of the model config a checkpoint depends on. `parametrization="mup"` applies µP's
init, attention-score and learning-rate scalings (llmjax.blocks.mup) to the stack.

Shape key: B batch, L length, S source (encoder) length, E embed width.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks import mup
from llmjax.blocks.attention import Attention, AttentionConfig
from llmjax.blocks.ffn import FeedForward
from llmjax.blocks.norms import make_norm

NORM_POSITIONS = ("pre", "post")
REMATS = ("none", "full", "dots_saveable")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Every key of a Transformer stack, with its default; the model group's keys."""
    num_layers: int = 6  # transformer layers
    d_model: int = 384  # residual width
    num_heads: int = 6  # query heads; d_model must be divisible by it
    num_kv_heads: int = 0  # key/value heads for grouped-query attention (0 = num_heads)
    mlp_dim: int = 1536  # hidden width of the feed-forward block
    position: str = "learned"  # sinusoidal | learned | rope | alibi
    rope_base: float = 10000.0  # RoPE frequency base
    ffn: str = "gelu"  # relu | gelu (tanh approximation) | gelu_exact (erf) | swiglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_epsilon: float = 0.0  # epsilon of every norm (0 = the norm's default: 1e-5 / 1e-6)
    norm_position: str = "pre"  # pre (GPT-2) | post (original Transformer)
    dropout: float = 0.0  # residual and embedding dropout
    attention_dropout: float = 0.0  # dropout on attention probabilities
    use_bias: bool = True  # biases in dense layers
    attention_backend: str = "auto"  # auto (cudnn on GPU, else xla) | xla | jax | cudnn
    remat: str = "none"  # activation rematerialisation per layer: none | full | dots_saveable
    scan_layers: bool = False  # one scanned layer with stacked parameters (faster compiles)
    init_std: float = 0.02  # std of the normal initialiser
    parametrization: str = "standard"  # standard | mup (Tensor Programs V; llmjax.blocks.mup)
    base_width: int = 0  # mup: the d_model at which mup equals standard init and LR (0 = d_model)
    dtype: str = "float32"  # compute dtype (set by the run: model configs mark it RUNTIME)

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def width_multiplier(self) -> float:
        """mup's m = d_model / base_width; 1 under the standard parametrization."""
        if self.parametrization != "mup":
            return 1.0
        return mup.width_multiplier(self.d_model, self.base_width)

    @property
    def hidden_init_std(self) -> float:
        """Init std of the attention and FFN matrices (init_std / sqrt(m) under mup)."""
        return mup.hidden_init_std(self.init_std, self.width_multiplier)

    def attention(self) -> AttentionConfig:
        scale = None  # 1 / sqrt(head_dim)
        if self.parametrization == "mup":
            scale = mup.attention_scale(self.head_dim, (self.base_width or self.d_model) // self.num_heads)
        return AttentionConfig(
            num_heads=self.num_heads, num_kv_heads=self.kv_heads, head_dim=self.head_dim,
            position=self.position, rope_base=self.rope_base, dropout=self.attention_dropout,
            use_bias=self.use_bias, backend=self.attention_backend, dtype=self.dtype,
            init_std=self.hidden_init_std, num_layers=self.num_layers, scale=scale)

    def lr_multipliers(self) -> Callable[[tuple[str, ...]], float] | None:
        """Parameter path -> Adam LR multiplier (llmjax.training.optim); None: all 1."""
        if self.parametrization != "mup":
            return None
        return functools.partial(mup.lr_multiplier, m=self.width_multiplier)

    def with_backend(self, platform: str) -> TransformerConfig:
        """'auto' attention resolved for the platform the run is on."""
        if self.attention_backend != "auto":
            return self
        return dataclasses.replace(self, attention_backend="cudnn" if platform == "gpu" else "xla")


class TransformerLayer(nn.Module):
    """pre:  x + drop(f(norm(x)))   post: norm(x + drop(f(x)))   for f in attn, [cross], ffn."""

    cfg: TransformerConfig
    causal: bool = True
    cross_attention: bool = False
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, x_BxLxE: jnp.ndarray, *, encoded_BxSxE: jnp.ndarray | None = None,
                 positions: jnp.ndarray | None = None, segment_ids: jnp.ndarray | None = None,
                 encoded_segment_ids: jnp.ndarray | None = None) -> jnp.ndarray:
        cfg, deterministic = self.cfg, self.deterministic
        pre = cfg.norm_position == "pre"
        drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)  # noqa: E731

        def sublayer(x, fn, norm_name):
            norm = make_norm(cfg.norm, cfg.dtype, name=norm_name, epsilon=cfg.norm_epsilon)
            if pre:
                return x + drop(fn(norm(x)))
            return norm(x + drop(fn(x)))

        x_BxLxE = nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))
        attn = Attention(cfg.attention(), causal=self.causal, name="attn")
        x_BxLxE = sublayer(x_BxLxE, lambda h: attn(
            h, positions=positions, segment_ids=segment_ids, deterministic=deterministic,
            decode=self.decode), "attn_norm")

        if self.cross_attention:
            if encoded_BxSxE is None and not self.decode:
                raise ValueError("a cross-attention layer needs the encoder output")
            cross = Attention(cfg.attention(), causal=False, cross=True, name="cross_attn")
            # Packed cross-attention: decoder segment i sees only encoder segment i. While
            # decoding, the source's keys and values come from the cache after the first call.
            x_BxLxE = sublayer(x_BxLxE, lambda h: cross(
                h, encoded_BxSxE, segment_ids=segment_ids if encoded_segment_ids is not None else None,
                kv_segment_ids=encoded_segment_ids, deterministic=deterministic, decode=self.decode),
                "cross_norm")

        ffn = FeedForward(mlp_dim=cfg.mlp_dim, kind=cfg.ffn, use_bias=cfg.use_bias, dropout=0.0,
                          dtype=cfg.dtype, init_std=cfg.hidden_init_std, num_layers=cfg.num_layers,
                          name="ffn")
        x_BxLxE = sublayer(x_BxLxE, lambda h: ffn(h, deterministic=deterministic), "ffn_norm")
        return nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))


class _ScannedLayer(TransformerLayer):
    """The layer in nn.scan's (carry, broadcast inputs) -> (carry, output) form."""

    @nn.compact
    def __call__(self, x_BxLxE, encoded_BxSxE, positions, segment_ids, encoded_segment_ids):
        y = TransformerLayer.__call__(self, x_BxLxE, encoded_BxSxE=encoded_BxSxE, positions=positions,
                                      segment_ids=segment_ids, encoded_segment_ids=encoded_segment_ids)
        return y, None


def _remat(layer_cls: type[nn.Module], remat: str, decode: bool) -> type[nn.Module]:
    """The layer rematerialised per `remat` (never while decoding: there is no backward)."""
    if remat == "none" or decode:
        return layer_cls
    policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if remat == "dots_saveable" else None
    return nn.remat(layer_cls, policy=policy, prevent_cse=layer_cls is not _ScannedLayer)


def run_layers(cfg: TransformerConfig, x_BxLxE: jnp.ndarray, *, causal: bool,
               cross_attention: bool = False, deterministic: bool = True, decode: bool = False,
               encoded_BxSxE: jnp.ndarray | None = None, positions: jnp.ndarray | None = None,
               segment_ids: jnp.ndarray | None = None,
               encoded_segment_ids: jnp.ndarray | None = None) -> jnp.ndarray:
    """cfg.num_layers layers applied to x; call inside a model's compact method (the layers
    become the caller's submodules)."""
    flags = dict(causal=causal, cross_attention=cross_attention, deterministic=deterministic,
                 decode=decode)
    if cfg.scan_layers:
        scanned = nn.scan(_remat(_ScannedLayer, cfg.remat, decode),
                          variable_axes={"params": 0, "cache": 0},
                          split_rngs={"params": True, "dropout": True},
                          in_axes=(nn.broadcast,) * 4, length=cfg.num_layers,
                          metadata_params={nn.PARTITION_NAME: sh.LAYERS})
        x_BxLxE, _ = scanned(cfg, **flags, name="layers")(
            x_BxLxE, encoded_BxSxE, positions, segment_ids, encoded_segment_ids)
        return x_BxLxE
    layer_cls = _remat(TransformerLayer, cfg.remat, decode)
    for i in range(cfg.num_layers):
        x_BxLxE = layer_cls(cfg, **flags, name=f"layer_{i}")(
            x_BxLxE, encoded_BxSxE=encoded_BxSxE, positions=positions, segment_ids=segment_ids,
            encoded_segment_ids=encoded_segment_ids)
    return x_BxLxE
