"""What the fine-tuning tasks on a task head (classify, tag, qa: llmjax.models.heads) share: the
row layout a family reads, the model's inputs and init, and batches drawn by an EpochOrder over
the task's examples (or windows), so that each task writes only how a batch's rows are built
(`_take`), its objective and its metrics.

Shape key: B batch, L length (data.seq_len).
"""
from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.data.order import EpochOrder
from llmjax.tasks.base import Batch, Task


class HeadTask(Task):
    """A Task whose model is a family with a task head, fed `[CLS] a [SEP] (b [SEP])` with token
    types (BERT-style families) or `a ([SEP] b) EOS` rows (llmjax.tasks.classify.encode_rows).
    `prepare` calls _order_examples once it knows how many there are."""

    _train_order: EpochOrder
    _eval_order: EpochOrder

    def _order_examples(self, n_train: int, n_eval: int) -> None:
        """Train examples shuffled per epoch by train.seed; eval in order, one micro-batch a batch."""
        t = self.run.train
        self._train_order = EpochOrder(n_train, t.batch_size, t.seed, shuffle=True)
        self._eval_order = EpochOrder(n_eval, self.eval_batch_size, shuffle=False)

    @property
    def _bert_style(self) -> bool:
        """Families with token types ([CLS]-pooled encoders) read BERT-style rows."""
        return getattr(self.run.model, "type_vocab_size", 0) > 0

    def _model_inputs(self, batch: Batch) -> dict[str, Any]:
        extra = {"token_types": batch["token_types"]} if self._bert_style else {}
        return {"attention_mask": batch["attention_mask"], **extra}

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        L = self.run.data.seq_len
        batch = {"attention_mask": jnp.ones((1, L), jnp.int32), "token_types": jnp.zeros((1, L), jnp.int32)}
        return model.init(rng, jnp.zeros((1, L), jnp.int32), deterministic=True,
                          **self._model_inputs(batch))["params"]

    def _logits(self, model, params, batch: Batch, deterministic: bool, rng=None) -> jax.Array:
        """The head's logits for a batch (dropout on unless deterministic)."""
        return model.apply({"params": params}, batch["inputs"], deterministic=deterministic,
                           rngs=None if rng is None else {"dropout": rng}, **self._model_inputs(batch))

    @abc.abstractmethod
    def _take(self, split: str, idx: np.ndarray) -> Batch:
        """The rows of examples idx of split (-1: a padding row, weight 0)."""

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._take("train", self._train_order.indices(step, rows))

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval_order.num_batches)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._take("eval", self._eval_order.indices(index, rows))
