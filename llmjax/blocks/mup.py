"""µP for Adam-type optimizers (Yang et al. 2022, Tensor Programs V, Table 3; the `mup` package):
the scalings that let a learning rate tuned on a narrow model transfer to a wide one.

With width multiplier m = d_model / base_width (m = 1 is the standard model):
  input embedding, position tables, norms, biases   init and Adam LR unchanged (vector-like)
  hidden matrices (q, k, v, attention out, FFN)     init std / sqrt(m), Adam LR / m (matrix-like)
  readout (LM head, classifier)                     zero init, logits x 1/m, LR unchanged
  attention scores                                  q.k * sqrt(D_base) / D instead of q.k / sqrt(D)
D_base = base_width / num_heads is the head dim at base width, so at m = 1 the score scale is
exactly 1 / sqrt(D) (the `mup` package's attn_mult = sqrt(D_base)).

Weight decay stays decoupled and follows the parameter's own learning rate: a hidden matrix
shrinks by (lr / m) * wd * p per update, as torch AdamW does under mup.MuAdamW (whose parameter
groups carry lr / m), so lr * wd is the same product for the update and the decay.
"""
from __future__ import annotations

import math

PARAMETRIZATIONS = ("standard", "mup")
# Modules whose `kernel` is a hidden (width x width) matrix: attention's and the FFN's projections.
HIDDEN_MATRICES = ("query", "key", "value", "out", "w1", "w2", "w3")


def width_multiplier(d_model: int, base_width: int) -> float:
    """m = d_model / base_width (base_width 0: the model is its own base, m = 1)."""
    return d_model / base_width if base_width else 1.0


def hidden_init_std(init_std: float, m: float) -> float:
    """Init std of a hidden matrix: init_std / sqrt(m) (exactly init_std at m = 1)."""
    return init_std / math.sqrt(m)


def attention_scale(head_dim: int, base_head_dim: int) -> float:
    """sqrt(D_base) / D, written so that it is exactly 1 / sqrt(D) when D == D_base."""
    return (1.0 / math.sqrt(base_head_dim)) * (base_head_dim / head_dim)


def lr_multiplier(path: tuple[str, ...], m: float) -> float:
    """Adam LR multiplier of the parameter at `path` (its dict keys, leaf last): 1 / m for a
    hidden matrix's kernel, 1 for everything else."""
    hidden = len(path) >= 2 and path[-1] == "kernel" and path[-2] in HIDDEN_MATRICES
    return 1.0 / m if hidden else 1.0
