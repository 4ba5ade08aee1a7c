"""BERT pretraining: masked-LM plus next-sentence prediction (Devlin et al. 2019).

Data: sentence pairs cut from the run's token streams (llmjax.data.sentence_pairs: segment B is
A's true continuation half the time, a segment of another document otherwise), masked on the
host (llmjax.data.masking: 15% of the non-special tokens, 80% [MASK] / 10% random / 10% kept),
the masks drawn from (seed, step, row) so a step always sees the same masks and resume is exact.
Objective: mean cross-entropy over the masked positions plus mean NSP cross-entropy over the
examples, as BERT; the head runs on the masked positions only (BERT's gather). Baselines: the
most frequent token and the unigram loss over exactly the positions an evaluation scores, and
the majority NSP label.

Shape key: B batch, L length (seq_len), P prediction slots per row, V padded vocabulary.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import check_fraction, check_positive, fail
from llmjax.data.atomic import locked
from llmjax.data.masking import EVAL_STREAM, TRAIN_STREAM, MaskingTables, mask_tokens
from llmjax.data.pipeline import Prepared, prepare, unigram_log_probs
from llmjax.data.sentence_pairs import SentencePairs
from llmjax.data.workers import default_workers
from llmjax.tasks.base import Batch, Log, Task
from llmjax.tasks.registry import register
from llmjax.training.objectives import token_nll


@dataclasses.dataclass(frozen=True)
class MLMTaskConfig:
    name: str = "mlm"  # the task, looked up in llmjax.tasks.registry
    mask_rate: float = 0.15  # share of (non-special) tokens predicted per row
    whole_word: bool = False  # mask whole words (every piece of a word) instead of single pieces
    max_predictions: int = 0  # prediction slots per row (0 = ceil(mask_rate * seq_len) + 1)
    short_seq_prob: float = 0.1  # share of examples with a shorter random target length (BERT)
    passes: int = 5  # differently cut and paired copies of the corpus (BERT's dupe_factor)

    def validate(self) -> None:
        check_fraction("task.mask_rate", self.mask_rate, low_open=True)
        check_fraction("task.short_seq_prob", self.short_seq_prob)
        check_positive("task.passes", self.passes)
        check_positive("task.max_predictions", self.max_predictions, allow_zero=True)


@register("mlm", MLMTaskConfig)
class MLMTask(Task):
    data: Prepared
    loss_denominator = "predictions"

    @property
    def max_predictions(self) -> int:
        cfg, L = self.run.task, self.run.data.seq_len
        return cfg.max_predictions or min(L, math.ceil(cfg.mask_rate * L) + 1)

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        d, t, cfg = self.run.data, self.run.train, self.run.task
        if d.seq_len < 8:
            fail("data.seq_len", d.seq_len, "a sentence pair needs at least 8 tokens: raise it")
        self.data = prepare(d, workdir, log=log, resuming=resuming)
        tok = self.data.tokenizer
        # Beside the corpus, so runs and sweeps sharing a prepared_dir build them once (in the
        # run's workdir when that directory is read-only).
        shared = self.data.directory if os.access(self.data.directory, os.W_OK) else workdir
        pairs = dict(tokenizer=tok, seq_len=d.seq_len, seed=t.seed, short_seq_prob=cfg.short_seq_prob,
                     cache_dir=os.path.join(shared, "sentence_pairs"),
                     workers=d.num_workers or default_workers(), log=log)
        with locked(pairs["cache_dir"]):
            self._train = SentencePairs(self.data.train_tokens, batch_size=t.batch_size, shuffle=True,
                                        passes=cfg.passes, source_id=f"{self.data.fingerprint}:train",
                                        **pairs)
            self._eval = SentencePairs(self.data.val_tokens, batch_size=self.eval_batch_size,
                                       shuffle=False, passes=1, source_id=f"{self.data.fingerprint}:val",
                                       **pairs)
        self._tables = MaskingTables.from_tokenizer(tok)
        log(f"data: {self._train.num_examples:,} train / {self._eval.num_examples:,} eval sentence "
            f"pairs of up to {d.seq_len} tokens ({cfg.passes} passes over the train split)")
        self._baselines = self._measure_baselines()

    def _mask(self, pairs: Batch, step: int, rows: slice | None, stream: int) -> Batch:
        cfg = self.run.task
        masked = mask_tokens(pairs["tokens"], pairs["attention_mask"], tokenizer_tables=self._tables,
                             seed=self.run.train.seed, step=step,
                             row_offset=(rows.start or 0) if rows is not None else 0,
                             rate=cfg.mask_rate, whole_word=cfg.whole_word,
                             max_predictions=self.max_predictions, stream=stream)
        return {"inputs": masked["inputs"], "token_types": pairs["token_types"],
                "attention_mask": pairs["attention_mask"], "mlm_positions": masked["mlm_positions"],
                "mlm_ids": masked["mlm_ids"],
                "mlm_weights": masked["mlm_weights"] * pairs["weights"][:, None],
                "nsp_labels": pairs["nsp_labels"], "weights": pairs["weights"]}

    def _measure_baselines(self) -> dict[str, float]:
        """Most-frequent-token accuracy and unigram loss over exactly the positions one
        evaluation predicts; the majority NSP label's accuracy over its examples."""
        log_p = unigram_log_probs(self.data.unigram_counts)
        counts = self.data.unigram_counts.astype(np.float64)
        counts[self._tables.special_V] = -1  # never a prediction target
        top = int(np.argmax(counts))
        nll = hits = preds = pos = examples = 0.0
        for i in range(self.num_eval_batches):
            b = self.eval_batch(i)
            w = b["mlm_weights"]
            nll -= float(np.sum(log_p[b["mlm_ids"]] * w))
            hits += float(np.sum((b["mlm_ids"] == top) * w))
            preds += float(np.sum(w))
            pos += float(np.sum(b["nsp_labels"] * b["weights"]))
            examples += float(np.sum(b["weights"]))
        share = pos / max(examples, 1.0)
        return {"mlm_unigram_loss": nll / max(preds, 1.0), "mlm_majority_accuracy": hits / max(preds, 1.0),
                "nsp_majority_accuracy": max(share, 1.0 - share), "mlm_majority_token": top}

    def model_config(self, platform: str) -> Any:
        return self.finalized_model(self.data.tokenizer.vocab_size, platform)

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        L, P = self.run.data.seq_len, self.max_predictions
        tokens = jnp.zeros((1, L), jnp.int32)
        return model.init(rng, tokens, token_types=tokens, attention_mask=jnp.ones((1, L), jnp.int32),
                          masked_positions=jnp.zeros((1, P), jnp.int32), deterministic=True)["params"]

    # ------------------------------------------------------------ batches

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._mask(self._train.batch(step, rows), step, rows, TRAIN_STREAM)

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval.num_batches)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._mask(self._eval.batch(index, rows), index, rows, EVAL_STREAM)

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"predictions": jnp.sum(batch["mlm_weights"].astype(jnp.float32)),
                "examples": jnp.sum(batch["weights"].astype(jnp.float32))}

    def _sums(self, model, params, batch, deterministic: bool, rng=None) -> dict[str, jax.Array]:
        mlm_logits_BxPxV, nsp_logits_Bx2 = model.apply(
            {"params": params}, batch["inputs"], token_types=batch["token_types"],
            attention_mask=batch["attention_mask"], masked_positions=batch["mlm_positions"],
            deterministic=deterministic, rngs=None if rng is None else {"dropout": rng})
        w_BxP, w_B = batch["mlm_weights"], batch["weights"]
        mlm_nll, _ = token_nll(mlm_logits_BxPxV, batch["mlm_ids"])
        nsp_nll, _ = token_nll(nsp_logits_Bx2, batch["nsp_labels"])
        mlm_hit = (jnp.argmax(mlm_logits_BxPxV, -1) == batch["mlm_ids"]).astype(jnp.float32)
        nsp_hit = (jnp.argmax(nsp_logits_Bx2, -1) == batch["nsp_labels"]).astype(jnp.float32)
        return {"mlm_nll_sum": jnp.sum(mlm_nll * w_BxP), "mlm_hits": jnp.sum(mlm_hit * w_BxP),
                "nsp_nll_sum": jnp.sum(nsp_nll * w_B), "nsp_hits": jnp.sum(nsp_hit * w_B),
                "predictions": jnp.sum(w_BxP), "examples": jnp.sum(w_B)}

    def objective(self, model, params, batch, denoms, rng):
        sums = self._sums(model, params, batch, deterministic=False, rng=rng)
        # mean MLM loss + mean NSP loss, as one sum over the loop's divisor (the predictions).
        scale = denoms["predictions"] / jnp.maximum(denoms["examples"], 1.0)
        loss_sum = sums["mlm_nll_sum"] + scale * sums["nsp_nll_sum"]
        return loss_sum, {k: sums[k] for k in ("mlm_nll_sum", "mlm_hits", "nsp_nll_sum", "nsp_hits")}

    @staticmethod
    def _metrics(sums, predictions, examples) -> dict[str, Any]:
        mlm_loss = sums["mlm_nll_sum"] / predictions
        nsp_loss = sums["nsp_nll_sum"] / examples
        return {"loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
                "mlm_accuracy": sums["mlm_hits"] / predictions, "nsp_accuracy": sums["nsp_hits"] / examples}

    def train_metrics(self, sums, denoms):
        return self._metrics(sums, jnp.maximum(denoms["predictions"], 1.0),
                             jnp.maximum(denoms["examples"], 1.0))

    def eval_sums(self, model, params, batch):
        return self._sums(model, params, batch, deterministic=True)

    def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        out = self._metrics(totals, max(float(totals["predictions"]), 1.0), max(float(totals["examples"]), 1.0))
        return {**{k: float(v) for k, v in out.items()}, "predictions": float(totals["predictions"])}

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        """The encoder on every position, the MLM head on the prediction slots only."""
        slots = self.run.train.batch_size * self.max_predictions
        return (model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()
                + model_cfg.mlm_head_flops() * slots)

    def describe(self, log: Log) -> None:
        b = self._baselines
        log(f"eval: {self.num_eval_batches} batches of {self.eval_batch_size} pairs; baselines over "
            f"them: MLM most-frequent-token accuracy {b['mlm_majority_accuracy']:.4f}, unigram "
            f"MLM loss {b['mlm_unigram_loss']:.4f}; NSP majority accuracy {b['nsp_majority_accuracy']:.4f}")

    def baselines(self) -> dict[str, float]:
        return dict(self._baselines)

    def eval_line(self, m: dict[str, float]) -> str:
        b = self._baselines
        return (f"eval mlm_loss {m['mlm_loss']:.4f} (unigram {b['mlm_unigram_loss']:.4f}), "
                f"mlm_accuracy {m['mlm_accuracy']:.4f} (most frequent {b['mlm_majority_accuracy']:.4f}), "
                f"nsp_loss {m['nsp_loss']:.4f}, nsp_accuracy {m['nsp_accuracy']:.4f} "
                f"(majority {b['nsp_majority_accuracy']:.4f})")

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """A few eval rows with their masked pieces filled in by the model."""
        batch = self.eval_batch(0, slice(0, min(2, self.eval_batch_size)))
        tok = self.data.tokenizer
        ids = self._predict(model, params, batch)
        for row in range(len(batch["inputs"])):
            w = batch["mlm_weights"][row] > 0
            want, got = batch["mlm_ids"][row][w], ids[row][w]
            shown = ", ".join(f"{tok.decode([a])!r}->{tok.decode([b])!r}" for a, b in list(zip(want, got))[:8])
            log(f"masked pieces (truth->prediction), eval row {row}: {shown}")

    def _predict(self, model, params, batch) -> np.ndarray:
        logits, _ = jax.jit(lambda p, b: model.apply(
            {"params": p}, b["inputs"], token_types=b["token_types"], attention_mask=b["attention_mask"],
            masked_positions=b["mlm_positions"], deterministic=True))(params, batch)
        return np.asarray(jnp.argmax(logits, -1))
