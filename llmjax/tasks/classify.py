"""Sequence classification (fine-tuning): one label per text or text pair.

Serves every family whose config has `num_labels` (BERT: the pooled [CLS]; GPT: the last real
token). Data: a labelled set from llmjax.data.labelled (the embedded stdlib-package task, or a
prepared tfds dataset such as glue/sst2 or imdb_reviews), encoded with the run's tokenizer (the
pretraining run's, when config.init_from names one): BERT-style rows are
`[CLS] a [SEP] (b [SEP])`, GPT-style rows `a ([SEP] b) EOS`, cut to seq_len (longest side first)
and right-padded with [PAD]. Objective: mean cross-entropy over the examples. Eval: accuracy,
macro-F1, per-class precision/recall/F1 and the confusion matrix (llmjax.evaluation.
classification), in metrics.jsonl and results.json. Baselines: the majority class and chance.

Shape key: B batch, L length (seq_len), K classes.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import check_positive
from llmjax.data.labelled import Labelled, load_labelled
from llmjax.data.order import EpochOrder
from llmjax.data.tokenizers import Tokenizer, train_or_load_tokenizer
from llmjax.evaluation.classification import classification_metrics, confusion_sums
from llmjax.tasks.base import Batch, Log, Task
from llmjax.tasks.registry import register
from llmjax.training.objectives import token_nll


@dataclasses.dataclass(frozen=True)
class ClassifyTaskConfig:
    name: str = "classify"  # the task, looked up in llmjax.tasks.registry
    dataset: str = "stdlib_packages"  # stdlib_packages (embedded) | tfds:NAME[/CONFIG]
    text_keys: str = ""  # tfds: the text feature(s), comma-separated for pairs ('' = the dataset's usual)
    label_key: str = "label"  # tfds: the ClassLabel feature
    train_split: str = "train"  # tfds split to train on
    eval_split: str = ""  # tfds split to evaluate on ('' = validation, else test)
    max_examples: int = 0  # cap on training examples (0 = all)

    def validate(self) -> None:
        check_positive("task.max_examples", self.max_examples, allow_zero=True)


def _fit(a: list[int], b: list[int] | None, room: int) -> tuple[list[int], list[int] | None]:
    """Cut the longer side first until both fit in room tokens (BERT's truncate_seq_pair)."""
    a, b = list(a), None if b is None else list(b)
    while len(a) + (len(b) if b is not None else 0) > room:
        if b is not None and len(b) > len(a):
            b.pop()
        else:
            a.pop()
    return a, b


def encode_examples(tok: Tokenizer, texts: list[str], pairs: list[str] | None, seq_len: int,
                    bert_style: bool) -> dict[str, np.ndarray]:
    """inputs, token_types, attention_mask (N, L) int32 of each text (pair)."""
    ids_a = tok.encode_batch(texts)
    ids_b = tok.encode_batch(pairs) if pairs is not None else [None] * len(texts)
    n = len(texts)
    inputs = np.full((n, seq_len), tok.pad_id, np.int32)
    types = np.zeros((n, seq_len), np.int32)
    mask = np.zeros((n, seq_len), np.int32)
    for i, (a, b) in enumerate(zip(ids_a, ids_b)):
        extra = (3 if b is not None else 2) if bert_style else (2 if b is not None else 1)
        a, b = _fit(a.tolist(), None if b is None else b.tolist(), seq_len - extra)
        if bert_style:
            row = [tok.cls_id, *a, tok.sep_id]
            second = [*b, tok.sep_id] if b is not None else []
        else:
            row = [*a, tok.sep_id] if b is not None else list(a)
            second = [*b, tok.eos_id] if b is not None else [tok.eos_id]
        if b is None and not bert_style:
            row, second = row + second, []
        full = row + second
        inputs[i, :len(full)] = full
        types[i, len(row):len(full)] = 1
        mask[i, :len(full)] = 1
    return {"inputs": inputs, "token_types": types, "attention_mask": mask}


@register("classify", ClassifyTaskConfig)
class ClassifyTask(Task):
    labelled: Labelled
    loss_denominator = "examples"

    @property
    def _bert_style(self) -> bool:
        """Families with token types ([CLS]-pooled encoders) read BERT-style rows."""
        return getattr(self.run.model, "type_vocab_size", 0) > 0

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        cfg, d, t = self.run.task, self.run.data, self.run.train
        keys = tuple(k.strip() for k in cfg.text_keys.split(",") if k.strip())
        self.labelled = load_labelled(cfg.dataset, tfds_data_dir=d.tfds_data_dir, text_keys=keys,
                                      label_key=cfg.label_key, train_split=cfg.train_split,
                                      eval_split=cfg.eval_split, max_examples=cfg.max_examples, log=log)
        lab = self.labelled
        self.tokenizer = train_or_load_tokenizer(d, lab.train_texts, os.path.join(workdir, "tokenizer"), log)
        enc = lambda texts, pairs: encode_examples(self.tokenizer, texts, pairs, d.seq_len,  # noqa: E731
                                                   self._bert_style)
        self._train = {**enc(lab.train_texts, lab.train_pairs), "labels": lab.train_labels.astype(np.int32)}
        self._eval = {**enc(lab.eval_texts, lab.eval_pairs), "labels": lab.eval_labels.astype(np.int32)}
        self._train_order = EpochOrder(len(lab.train_labels), t.batch_size, t.seed, shuffle=True)
        self._eval_order = EpochOrder(len(lab.eval_labels), self.eval_batch_size, shuffle=False)
        cut = float(np.mean(self._train["attention_mask"][:, -1]))
        log(f"data: {len(lab.train_labels):,} train / {len(lab.eval_labels):,} eval examples, "
            f"{len(lab.label_names)} classes; {cut:.1%} of train rows fill all {d.seq_len} tokens (cut)")

    @property
    def num_labels(self) -> int:
        return len(self.labelled.label_names)

    def model_config(self, platform: str) -> Any:
        return dataclasses.replace(self.finalized_model(self.tokenizer.vocab_size, platform),
                                   num_labels=self.num_labels)

    def _model_inputs(self, batch: Batch) -> dict[str, Any]:
        extra = {"token_types": batch["token_types"]} if self._bert_style else {}
        return {"attention_mask": batch["attention_mask"], **extra}

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        L = self.run.data.seq_len
        ones = jnp.ones((1, L), jnp.int32)
        batch = {"attention_mask": ones, "token_types": jnp.zeros((1, L), jnp.int32)}
        return model.init(rng, jnp.zeros((1, L), jnp.int32), deterministic=True,
                          **self._model_inputs(batch))["params"]

    # ------------------------------------------------------------ batches

    @staticmethod
    def _take(arrays: dict[str, np.ndarray], idx: np.ndarray) -> Batch:
        real = idx >= 0
        safe = np.where(real, idx, 0)
        out = {k: v[safe] for k, v in arrays.items()}
        out["attention_mask"] = out["attention_mask"] * real[:, None]
        out["weights"] = real.astype(np.float32)
        return out

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._take(self._train, self._train_order.indices(step, rows))

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval_order.num_batches)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._take(self._eval, self._eval_order.indices(index, rows))

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"examples": jnp.sum(batch["weights"].astype(jnp.float32))}

    def _logits(self, model, params, batch, deterministic: bool, rng=None) -> jax.Array:
        return model.apply({"params": params}, batch["inputs"], deterministic=deterministic,
                           rngs=None if rng is None else {"dropout": rng}, **self._model_inputs(batch))

    def objective(self, model, params, batch, denoms, rng):
        logits_BxK = self._logits(model, params, batch, deterministic=False, rng=rng)
        nll_B, _ = token_nll(logits_BxK, batch["labels"])
        hit_B = (jnp.argmax(logits_BxK, -1) == batch["labels"]).astype(jnp.float32)
        w_B = batch["weights"]
        nll_sum = jnp.sum(nll_B * w_B)
        return nll_sum, {"nll_sum": nll_sum, "hits": jnp.sum(hit_B * w_B)}

    def train_metrics(self, sums, denoms):
        n = jnp.maximum(denoms["examples"], 1.0)
        return {"loss": sums["nll_sum"] / n, "accuracy": sums["hits"] / n}

    def eval_sums(self, model, params, batch):
        logits_BxK = self._logits(model, params, batch, deterministic=True)
        nll_B, _ = token_nll(logits_BxK, batch["labels"])
        return {"nll_sum": jnp.sum(nll_B * batch["weights"]), "examples": jnp.sum(batch["weights"]),
                "confusion": confusion_sums(logits_BxK, batch["labels"], batch["weights"])}

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, Any]:
        out = classification_metrics(np.asarray(totals["confusion"]), self.labelled.label_names)
        return {"loss": float(totals["nll_sum"]) / max(float(totals["examples"]), 1.0), **out}

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()

    @functools.cached_property
    def _majority(self) -> dict[str, float]:
        """The majority-class and chance baselines over the evaluated examples (once per run)."""
        n = min(len(self.labelled.eval_labels), self.num_eval_batches * self.eval_batch_size)
        labels = self.labelled.eval_labels[:n]
        top = int(np.bincount(self.labelled.train_labels, minlength=self.num_labels).argmax())
        acc = float(np.mean(labels == top)) if n else 0.0
        # Predicting one class always: F1 of that class is 2acc/(1+acc), the others' 0.
        return {"majority_accuracy": acc, "majority_f1_macro": 2 * acc / (1 + acc) / self.num_labels,
                "chance_accuracy": 1.0 / self.num_labels}

    def describe(self, log: Log) -> None:
        b = self._majority
        log(f"eval: {self.num_eval_batches} batches of {self.eval_batch_size}; baselines: majority class "
            f"accuracy {b['majority_accuracy']:.4f} (macro-F1 {b['majority_f1_macro']:.4f}), chance "
            f"{b['chance_accuracy']:.4f}")

    def baselines(self) -> dict[str, float]:
        return dict(self._majority)

    def eval_line(self, m: dict[str, Any]) -> str:
        return (f"eval loss {m['loss']:.4f}, accuracy {m['accuracy']:.4f}, macro-F1 {m['f1_macro']:.4f} "
                f"(majority class {self._majority['majority_accuracy']:.4f})")
