"""The coordinate check of Tensor Programs V (Yang et al. 2022, fig. 5): mean |activation| of a
GPT's token embeddings, attention logits, block outputs and output logits across widths over
the first AdamW steps. Under µP the curves stay flat in width; under the standard
parametrization the logits and attention logits grow with it, which is why its best learning
rate shrinks as the model widens.

Batches are real text: the first standard-library sources (llmjax.data.stdlib_corpus, read
directly, no tfds build) as UTF-8 bytes, so it runs in seconds. The activations come from
flax's capture_intermediates plus the attention layer's own `intermediates` sow, both of which
act only here (the training path never makes that collection mutable).

Shape key: S steps, W widths, B batch, L length, V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from llmjax.blocks.embed import Embed
from llmjax.blocks.transformer import TransformerLayer
from llmjax.config import ConfigError, OptimConfig
from llmjax.data.stdlib_corpus import iter_documents
from llmjax.data.tokenizers import ByteTokenizer
from llmjax.models import registry
from llmjax.models.gpt import GPTConfig
from llmjax.models.token_model import pad_vocab
from llmjax.training import optim


@dataclasses.dataclass(frozen=True)
class CoordCheck:
    """values[parametrization][quantity] is a (steps, widths) array of mean |activation| before
    each step's update (row 0: at init)."""
    widths: tuple[int, ...]
    values: dict[str, dict[str, np.ndarray]]

    def spread(self, parametrization: str, quantity: str, step: int = -1) -> float:
        """max / min over widths at `step`: 1 is perfectly flat."""
        row_W = self.values[parametrization][quantity][step]
        return float(np.max(row_W) / np.min(row_W))


def text_batches(num_batches: int, batch_size: int, seq_len: int) -> np.ndarray:
    """(num_batches, B, L + 1) byte tokens from the first stdlib sources, EOS between files."""
    tok, need = ByteTokenizer(), num_batches * batch_size * (seq_len + 1)
    stream: list[np.ndarray] = []
    have = 0
    for _, text in iter_documents():
        stream += [tok.encode_batch([text])[0], np.array([tok.eos_id], np.int32)]
        have += len(stream[-2]) + 1
        if have >= need:
            return np.concatenate(stream)[:need].reshape(num_batches, batch_size, seq_len + 1)
    raise ConfigError(f"coord check: the stdlib corpus has {have:,} bytes, fewer than the {need:,} of "
                      f"{num_batches} batches of {batch_size} x {seq_len + 1}: take fewer steps or rows")


def model_config(width: int, parametrization: str, base_width: int, num_layers: int = 2,
                 num_heads: int = 4, seq_len: int = 64) -> GPTConfig:
    """A GPT of the given width (heads fixed, so the head dim grows with it), untied head."""
    return GPTConfig(vocab_size=pad_vocab(ByteTokenizer.vocab_size, 64), num_layers=num_layers,
                     d_model=width, num_heads=num_heads, mlp_dim=4 * width, max_len=seq_len,
                     tie_embeddings=False, parametrization=parametrization, base_width=base_width)


def _captured(module: Any, method: str) -> bool:
    return method == "__call__" and isinstance(module, (Embed, TransformerLayer))


def _means(intermediates: dict, logits_BxLxV: jax.Array, num_layers: int) -> dict[str, jax.Array]:
    out = {"embedding": jnp.mean(jnp.abs(intermediates["embed"]["__call__"][0]))}
    for i in range(num_layers):
        layer = intermediates[f"layer_{i}"]
        out[f"attn_logits_{i}"] = layer["attn"]["logits_abs_mean"][0]
        out[f"block_{i}"] = jnp.mean(jnp.abs(layer["__call__"][0]))
    out["logits"] = jnp.mean(jnp.abs(logits_BxLxV))
    return out


def run_width(cfg: GPTConfig, tokens_SxBxL: np.ndarray, lr: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean |activation| per quantity, (steps,), over AdamW steps on the given batches."""
    model = registry.build(cfg)
    params = jax.jit(model.init)(jax.random.key(seed), tokens_SxBxL[0, :, :-1])["params"]
    ocfg = OptimConfig(lr=lr, schedule="constant", warmup_steps=0, weight_decay=0.0, grad_clip=0.0)
    tx = optim.optimizer(ocfg, len(tokens_SxBxL), registry.lr_multipliers(cfg))

    @jax.jit
    def step(params, opt_state, batch_BxL):
        def loss(p):
            logits, state = model.apply({"params": p}, batch_BxL[:, :-1], capture_intermediates=_captured,
                                        mutable=["intermediates"])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch_BxL[:, 1:]).mean()
            return ce, _means(state["intermediates"], logits, cfg.num_layers)

        grads, means = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, means

    opt_state, rows = tx.init(params), []
    for batch_BxL in tokens_SxBxL:
        params, opt_state, means = step(params, opt_state, jnp.asarray(batch_BxL))
        rows.append(jax.device_get(means))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def coord_check(widths: Sequence[int], steps: int = 5, lr: float = 1e-2, num_layers: int = 2,
                batch_size: int = 8, seq_len: int = 64,
                parametrizations: Sequence[str] = ("standard", "mup")) -> CoordCheck:
    """Both parametrizations at every width (mup's base width: the smallest), the same batches."""
    widths = tuple(sorted(widths))
    if len(widths) < 2 or any(w % 4 for w in widths):
        raise ConfigError(f"coord check widths {widths}: give two or more, each a multiple of 4 (the heads)")
    tokens = text_batches(steps, batch_size, seq_len)
    values = {}
    for p in parametrizations:
        runs = [run_width(model_config(w, p, widths[0], num_layers, seq_len=seq_len), tokens, lr) for w in widths]
        values[p] = {q: np.stack([r[q] for r in runs], axis=1) for q in runs[0]}
    return CoordCheck(widths, values)


def plot(check: CoordCheck, path: str, title: str = "") -> None:
    """Grid PNG: one row per parametrization, one panel per quantity; x = log2 width, one line
    per step."""
    try:
        import matplotlib
    except ImportError as e:
        raise ConfigError("plotting the coord check needs matplotlib: pip install matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(check.values)
    quantities = list(check.values[params[0]])
    fig, axes = plt.subplots(len(params), len(quantities), squeeze=False,
                             figsize=(2.6 * len(quantities), 2.4 * len(params)))
    x_W = [math.log2(w) for w in check.widths]
    for row, p in enumerate(params):
        for col, q in enumerate(quantities):
            ax = axes[row][col]
            for s, y_W in enumerate(check.values[p][q]):
                ax.plot(x_W, y_W, marker="o", ms=3, label=f"step {s}", color=plt.cm.viridis(s / len(check.values[p][q])))
            ax.set_yscale("log")
            ax.set_title(f"{p}: {q}", fontsize=8)
            ax.set_xlabel("log2 width", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
