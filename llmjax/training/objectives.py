"""Losses. Returned as token sums with their weight sums, so that gradient accumulation,
data parallelism and evaluation all reduce to one exact token-weighted mean."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each token's negative log-likelihood (B, L) and log-normaliser log Z (B, L), in float32
    (per-token views such as the loss by context position start here). Any leading shape: the
    MLM's prediction slots (B, P, V) and a classifier's examples (B, K) use it too."""
    logits = logits_BxLxV.astype(jnp.float32)
    log_z_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return log_z_BxL - target_logit_BxL, log_z_BxL


def cross_entropy_sums(logits_BxLxV: jax.Array, targets_BxL: jax.Array, weights_BxL: jax.Array,
                       z_loss: float = 0.0, label_smoothing: float = 0.0,
                       num_classes: int | None = None,
                       smoothing_logits_BxLxV: jax.Array | None = None) -> dict[str, jax.Array]:
    """Summed next-token cross-entropy in float32 (plus z-loss), and the token count.

    nll_sum is always the plain cross-entropy; loss_sum, what is trained, adds:
    z-loss (PaLM): z_loss * log(Z)^2 per token, keeping the softmax normaliser near 1 so bf16
    logits stay well conditioned;
    label smoothing (Szegedy et al. 2016; the Transformer's 0.1): the target distribution puts
    label_smoothing uniformly over the first num_classes ids (the real vocabulary, not the
    padding of the table) and the rest on the target. Its uniform term is the cross-entropy of
    smoothing_logits when given: a pointer-generator passes its generation distribution, since on
    the copy mixture's log p the term would reward generation mass on every id, against copying
    (models/copy_head.py).
    """
    nll_BxL, log_z_BxL = token_nll(logits_BxLxV, targets_BxL)
    w = weights_BxL.astype(jnp.float32)
    out = {"nll_sum": jnp.sum(nll_BxL * w), "weight_sum": jnp.sum(w)}
    out["loss_sum"] = out["nll_sum"]
    if label_smoothing:
        V = num_classes or logits_BxLxV.shape[-1]
        if smoothing_logits_BxLxV is None:
            uniform_nll_BxL = log_z_BxL - jnp.mean(logits_BxLxV[..., :V].astype(jnp.float32), axis=-1)
        else:
            smoothing = smoothing_logits_BxLxV.astype(jnp.float32)
            uniform_nll_BxL = (jax.nn.logsumexp(smoothing, axis=-1)
                               - jnp.mean(smoothing[..., :V], axis=-1))
        out["loss_sum"] = jnp.sum(((1.0 - label_smoothing) * nll_BxL + label_smoothing * uniform_nll_BxL) * w)
    if z_loss:
        out["loss_sum"] = out["loss_sum"] + z_loss * jnp.sum(jnp.square(log_z_BxL) * w)
    return out
