"""Task heads: what a fine-tuning task puts on a family's final hidden states instead of the
family's own head (LM, MLM + NSP). One registry for every family, so a new task is a task module
and a head name, never a new model.

  sequence   one label per row: a dense layer on the row's pooled state (which state is the
             family's choice: BERT's pooled [CLS], GPT's and the LSTM's last real token) -> (B, K)
  token      one label per position: dropout, then a dense layer on every position -> (B, L, K)
  span       start and end logits per position (extractive QA): a dense layer -> (B, L, 2)

A task names its head (`head` ClassVar on its config); a family lists the heads it serves
(`heads` ClassVar on its config) and resolve refuses the pairs that do not meet. The task sets
the family config's runtime fields `head` and `num_labels` (classes; a span head has 2 outputs
and leaves it 0). Each head's dense layer has its own top-level name (HEAD_PARAMS), so a warm
start from a pretraining run or from another head's run restores everything but the new head.

Shape key: B batch, L length, E hidden width, K outputs (classes, or 2 for span).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.attention import Projection

HEADS = ("sequence", "token", "span")
HEAD_PARAMS = {"sequence": "classifier", "token": "token_classifier", "span": "qa_outputs"}


def num_outputs(head: str, num_labels: int) -> int:
    """Outputs of the head's dense layer per row (sequence) or per position (token, span)."""
    return 2 if head == "span" else num_labels


def check(head: str, num_labels: int, served: tuple[str, ...]) -> None:
    """A one-line ValueError for runtime head fields a task set wrong (a bug in the task, not
    the user's config: resolve already matched the task to the family)."""
    if head and head not in served:
        raise ValueError(f"head={head!r} is not served by this family (it serves "
                         f"{', '.join(served) or 'no task heads'})")
    if head in ("sequence", "token") and num_labels < 1:
        raise ValueError(f"a {head} head needs num_labels >= 1, got {num_labels}")
    if head in ("", "span") and num_labels:
        raise ValueError(f"num_labels={num_labels} is only read by a sequence or token head "
                         f"(head={head!r}): set head, or leave num_labels 0")


def describe(head: str, num_labels: int) -> str:
    """The head for a model's summary line ('' for the family's own)."""
    return {"": "", "sequence": f"sequence classifier over {num_labels} labels",
            "token": f"token classifier over {num_labels} labels",
            "span": "span start/end head"}[head]


def per_token_params(head: str, num_labels: int, d_model: int) -> int:
    """Kernel parameters a head multiplies at every position (FLOPs accounting): a sequence
    head acts once per row and counts none."""
    return 0 if head in ("", "sequence") else d_model * num_outputs(head, num_labels)


def projection(head: str, num_labels: int, init_std: float, dtype: str, **name: str) -> Projection:
    """The head's dense layer E -> K (name it HEAD_PARAMS[head]: in a compact method pass
    name=..., in setup assign it to that attribute)."""
    return Projection((num_outputs(head, num_labels),), (sh.EMBED, sh.LABELS), init_std=init_std,
                      dtype=dtype, **name)


def apply(head: str, dense: Callable[[Any], Any], x_BxLxE: jnp.ndarray, pooled_BxE: jnp.ndarray | None,
          drop: Callable[..., Any], deterministic: bool) -> jnp.ndarray:
    """The head's float32 logits: (B, K) from pooled_BxE for a sequence head, (B, L, K) from every
    position of x_BxLxE for a token head (after drop, the family's dropout), (B, L, 2) for span."""
    if head == "sequence":
        return nn.with_logical_constraint(dense(pooled_BxE).astype(jnp.float32), (sh.BATCH, None))
    if head == "token":
        x_BxLxE = drop(x_BxLxE, deterministic=deterministic)
    logits = dense(x_BxLxE).astype(jnp.float32)
    return nn.with_logical_constraint(logits, (sh.BATCH, sh.ACT_LENGTH, None))


def last_real(x_BxLxE: jnp.ndarray, mask_BxL: jnp.ndarray | None) -> jnp.ndarray:
    """Each row's state at its last real position (mask 1 real, 0 right padding; None: the last
    position): what a causal model's sequence head reads, the only state that has seen the whole
    row. A row of padding only reads position 0."""
    B, L, _ = x_BxLxE.shape
    if mask_BxL is None:
        return x_BxLxE[:, -1]
    index_L = jnp.arange(L, dtype=jnp.int32)
    last_B = jnp.max(jnp.where(jnp.asarray(mask_BxL) != 0, index_L[None], 0), axis=1)
    return jnp.take_along_axis(x_BxLxE, last_B[:, None, None], axis=1)[:, 0]


def mean_real(x_BxLxE: jnp.ndarray, mask_BxL: jnp.ndarray | None) -> jnp.ndarray:
    """Each row's mean state over its real positions (None: all; a row of padding: zeros): a
    recurrent classifier's usual pooling, which reaches every position's state directly where
    the last state must carry the whole row through the recurrence."""
    if mask_BxL is None:
        return jnp.mean(x_BxLxE, axis=1)
    m_BxL = (jnp.asarray(mask_BxL) != 0).astype(x_BxLxE.dtype)
    total_BxE = jnp.einsum("ble,bl->be", x_BxLxE, m_BxL)
    return total_BxE / jnp.maximum(m_BxL.sum(axis=1), 1.0)[:, None]
