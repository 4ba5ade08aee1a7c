"""Language-model pretraining: next-token cross-entropy on packed rows of a token stream.

Serves every causal LM family (GPT, the LSTM). Data: the run's token streams
(llmjax.data.pipeline), cut into rows of seq_len + 1 tokens; the batch of a step is a pure
function of (seed, step); the model gets the optional batch inputs its config declares
(`inputs`). Objective: float32 cross-entropy (plus z-loss) summed over target tokens,
normalised by the update's token count. Eval: token-weighted loss, perplexity and bits per byte
over the validation stream, and the loss at each context position (Kaplan et al. 2020 fig. 7)
in workdir/eval/per_position_loss.json. Baseline: the unigram loss of the train token
frequencies.

Shape key: B batch, L length (seq_len), V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import check_choice
from llmjax.data.pipeline import PackedBatches, Prepared, prepare, unigram_log_probs
from llmjax.generation.decode import generate
from llmjax.tasks.base import Batch, Log, Task
from llmjax.tasks.registry import register
from llmjax.training.metrics import bits_per_byte
from llmjax.training.objectives import cross_entropy_sums, token_nll

PROMPTS = ("def ", "class ", "import ", "The ")
# Optional batch inputs of a family config without `inputs` (the Transformer LMs' pair).


@dataclasses.dataclass(frozen=True)
class LMTaskConfig:
    name: str = "lm"  # the task, looked up in llmjax.tasks.registry

    def validate(self) -> None:
        check_choice("task.name", self.name, ("lm",))


def position_sums(nll_BxL: jax.Array, weights_BxL: jax.Array,
                  positions_BxL: jax.Array | None = None) -> dict[str, jax.Array]:
    """nll and weight summed over the batch at each context position, (L,) each: the column,
    or with per-document positions (packed rows under document_mask) the place in the document."""
    B, L = nll_BxL.shape
    if positions_BxL is None:
        positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
    index = positions_BxL.reshape(-1)
    return {"position_nll": jax.ops.segment_sum((nll_BxL * weights_BxL).reshape(-1), index, num_segments=L),
            "position_weight": jax.ops.segment_sum(weights_BxL.reshape(-1), index, num_segments=L)}


@register("lm", LMTaskConfig)
class LMTask(Task):
    data: Prepared

    def _model_kwargs(self, batch: Batch) -> dict[str, Any]:
        """The batch inputs the model's config declares it takes, where the batch has them."""
        return {k: batch[k] for k in self.run.model.inputs if k in batch}

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        d, t = self.run.data, self.run.train
        self.data = prepare(d, workdir, log=log, resuming=resuming)
        tok = self.data.tokenizer
        self._train = PackedBatches(self.data.train_tokens, d.seq_len, t.batch_size, t.seed,
                                    shuffle=True, document_mask=d.document_mask, eos_id=tok.eos_id)
        self._eval = PackedBatches(self.data.val_tokens, d.seq_len, self.eval_batch_size, t.seed,
                                   shuffle=False, document_mask=d.document_mask, eos_id=tok.eos_id,
                                   max_tokens=d.eval_tokens)
        self._byte_lengths = jnp.asarray(tok.byte_lengths(), jnp.float32)
        self._unigram = self._unigram_baseline()

    def _unigram_baseline(self) -> float:
        """The unigram loss over exactly the target tokens one evaluation scores."""
        log_p = unigram_log_probs(self.data.unigram_counts)
        nll = weight = 0.0
        for i in range(self.num_eval_batches):
            b = self.eval_batch(i)
            nll -= float(np.sum(log_p[b["targets"]] * b["weights"]))
            weight += float(np.sum(b["weights"]))
        return nll / max(weight, 1.0)

    def model_config(self, platform: str) -> Any:
        return self.finalized_model(self.data.tokenizer.vocab_size, platform)

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        tokens = jnp.zeros((1, self.run.data.seq_len), jnp.int32)
        return model.init(rng, tokens, deterministic=True)["params"]

    # ------------------------------------------------------------ batches

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._train.batch(step, rows)

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval.num_batches)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._eval.batch(index, rows)

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"tokens": jnp.sum(batch["weights"].astype(jnp.float32))}

    def objective(self, model, params, batch, denoms, rng):
        logits_BxLxV = model.apply({"params": params}, batch["inputs"], deterministic=False,
                                   rngs={"dropout": rng}, **self._model_kwargs(batch))
        sums = cross_entropy_sums(logits_BxLxV, batch["targets"], batch["weights"], self.run.train.z_loss)
        return sums["loss_sum"], {"nll_sum": sums["nll_sum"], "loss_sum": sums["loss_sum"]}

    def train_metrics(self, sums, denoms):
        count = jnp.maximum(denoms["tokens"], 1.0)
        metrics = {"loss": sums["nll_sum"] / count, "tokens": denoms["tokens"]}
        if self.run.train.z_loss:
            metrics["z_loss"] = (sums["loss_sum"] - sums["nll_sum"]) / count
        return metrics

    def eval_sums(self, model, params, batch):
        logits_BxLxV = model.apply({"params": params}, batch["inputs"], deterministic=True,
                                   **self._model_kwargs(batch))
        nll_BxL, _ = token_nll(logits_BxLxV, batch["targets"])
        w_BxL = batch["weights"].astype(jnp.float32)
        n_bytes = jnp.sum(self._byte_lengths[batch["targets"]] * w_BxL)
        return {"nll_sum": jnp.sum(nll_BxL * w_BxL), "weight_sum": jnp.sum(w_BxL), "byte_sum": n_bytes,
                **position_sums(nll_BxL, w_BxL, batch.get("positions"))}

    def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        loss = totals["nll_sum"] / max(totals["weight_sum"], 1.0)
        return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
                "bits_per_byte": bits_per_byte(totals["nll_sum"], totals["byte_sum"]),
                "tokens": totals["weight_sum"]}

    def eval_details(self, totals: dict[str, Any]) -> dict[str, Any]:
        """per_position_loss: the loss at each context position 0..seq_len-1, null where no
        token was scored (possible only under document_mask); per_position_tokens: the weight
        behind each (their weighted mean is the eval loss)."""
        nll_L = np.asarray(totals["position_nll"], np.float64)
        weight_L = np.asarray(totals["position_weight"], np.float64)
        loss = [float(n / w) if w > 0 else None for n, w in zip(nll_L, weight_L)]
        return {"per_position_loss": loss, "per_position_tokens": weight_L.tolist()}

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()

    def describe(self, log: Log) -> None:
        rows = min(self._eval.rows_visited, self.num_eval_batches * self.eval_batch_size)
        log(f"eval: {rows:,} of {self._eval.num_rows:,} validation rows ({self.num_eval_batches} "
            f"batches); unigram baseline over them (train token frequencies): {self._unigram:.4f}")

    def baselines(self) -> dict[str, float]:
        return {"unigram_loss": self._unigram}

    def eval_line(self, metrics: dict[str, float]) -> str:
        return (f"eval loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f}, "
                f"bits/byte {metrics['bits_per_byte']:.4f} (unigram baseline {self._unigram:.4f})")

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """Continuations of fixed prompts, in one batch (every process: parameters may be sharded)."""
        t, tok = self.run.train, self.data.tokenizer
        prompts = PROMPTS[: t.num_samples]
        ids = [tok.encode(p) for p in prompts]
        limit = model.cfg.max_prompt_len(0)  # the family's own limit; None: any length (a recurrent state)
        room = t.sample_tokens if limit is None else limit - max((len(i) for i in ids), default=0)
        if not prompts or room <= 0:
            return
        log("samples (temperature 0.8, top-k 50):")
        new = generate(model, params, ids, max_new_tokens=min(t.sample_tokens, room),
                       rng=jax.random.key(t.seed), temperature=0.8, top_k=50, eos_id=tok.eos_id)
        for prompt, row in zip(prompts, np.asarray(new).tolist()):
            log(f"--- {prompt!r}\n{prompt}{tok.decode([x for x in row if x != tok.eos_id])}")
