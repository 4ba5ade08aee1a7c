"""Label smoothing beside copy attention: the smoothed loss trained by the seq2seq task never
pushes the pointer-generator's gate away from copying when copying is right, and a model
without a copy head trains exactly the loss it did."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.models.encdec import EncDecConfig
from llmjax.models.registry import build
from llmjax.tasks.seq2seq import training_sums
from llmjax.training.objectives import cross_entropy_sums

CFG = EncDecConfig(vocab_size=64, num_layers=1, num_decoder_layers=1, d_model=32, num_heads=4, mlp_dim=64,
                   max_len=16, init_std=0.2, position="learned", start_id=1, dropout=0.0, attention_dropout=0.0)
T = 3
BATCH = {"source": np.full((1, 5), 7, np.int32),  # every source token is the target's
         "decoder_inputs": np.array([[1, 7, 7]], np.int32), "targets": np.full((1, T), 7, np.int32),
         "weights": np.ones((1, T), np.float32),
         "source_segment_ids": np.ones((1, 5), np.int32), "source_positions": np.arange(5)[None],
         "target_segment_ids": np.ones((1, T), np.int32), "target_positions": np.arange(T)[None]}


def _model(**changes):
    model = build(dataclasses.replace(CFG, **changes))
    return model, nn.unbox(model.init(jax.random.key(0), BATCH["source"], BATCH["decoder_inputs"])["params"])


def _loss(model, params):
    return training_sums(model, params, BATCH, jax.random.key(1), label_smoothing=0.1,
                         num_classes=CFG.vocab_size)["loss_sum"]


def test_smoothing_does_not_push_the_gate_away_from_a_right_copy():
    """Source = the target token, gate favouring copy (g ~ 0.05): opening the gate further
    toward generation must not lower the smoothed loss (its uniform term over log of the
    mixture rewarded generation mass on every id, about 0.1 / g per token against copying)."""
    model, params = _model(copy_attention=True)

    def loss_at(bias):
        p = dict(params, copy=dict(params["copy"], gate=dict(params["copy"]["gate"], bias=jnp.full((1,), bias))))
        return _loss(model, p)

    slope = float(jax.grad(loss_at)(-3.0))
    assert slope > 0.0, slope  # toward generation costs: the gradient keeps the copy
    assert float(loss_at(-4.0)) < float(loss_at(-3.0)) < float(loss_at(-2.0))


def test_without_a_copy_head_the_smoothed_loss_is_unchanged():
    model, params = _model()
    logits = model.apply({"params": params}, BATCH["source"], BATCH["decoder_inputs"],
                         **{k: BATCH[k] for k in ("source_segment_ids", "source_positions",
                                                  "target_segment_ids", "target_positions")})
    want = cross_entropy_sums(logits, BATCH["targets"], BATCH["weights"], label_smoothing=0.1,
                              num_classes=CFG.vocab_size)
    got = training_sums(model, params, BATCH, jax.random.key(1), label_smoothing=0.1, num_classes=CFG.vocab_size)
    for key in want:
        assert np.asarray(got[key]).tobytes() == np.asarray(want[key]).tobytes(), key
