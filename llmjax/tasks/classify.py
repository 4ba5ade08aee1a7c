"""Sequence classification (fine-tuning): one label per text or text pair.

Serves every family with a sequence head (llmjax.models.heads; BERT: the pooled [CLS]; GPT and
the LSTM: the last real token). Data: a labelled set from llmjax.data.labelled (the embedded stdlib-package task, or a
prepared tfds dataset such as glue/sst2 or imdb_reviews), tokenized once with the run's tokenizer
(the pretraining run's, when config.init_from names one; else one trained on a random sample of
the train texts, up to data.spm_train_chars) into a cache in the workdir that is memory-mapped
(llmjax.data.example_cache), so memory does not grow with the dataset. A batch's rows are built
from the cache when it is drawn: BERT-style rows are `[CLS] a [SEP] (b [SEP])`, GPT-style rows
`a ([SEP] b) EOS`, cut to seq_len (longest side first) and right-padded with [PAD]. Objective: mean cross-entropy over the examples. Eval: accuracy,
macro-F1, per-class precision/recall/F1 and the confusion matrix (llmjax.evaluation.
classification), in metrics.jsonl and results.json. Baselines: the majority class and chance.

Shape key: B batch, L length (seq_len), K classes.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import check_positive
from llmjax.data import example_cache
from llmjax.data.labelled import LabelledStream, describe, open_labelled
from llmjax.data.tokenizers import Tokenizer, has_tokenizer, train_or_load_tokenizer
from llmjax.evaluation.classification import (classification_metrics, confusion_sums,
                                              majority_baselines)
from llmjax.tasks.base import Batch, Log
from llmjax.tasks.head_task import HeadTask
from llmjax.tasks.registry import register
from llmjax.training.objectives import token_nll


@dataclasses.dataclass(frozen=True)
class ClassifyTaskConfig:
    head: ClassVar[str] = "sequence"  # the model head it trains (llmjax.models.heads)
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
    keep_a, keep_b = _fit_lengths(len(a), None if b is None else len(b), room)
    return list(a[:keep_a]), None if b is None else list(b[:keep_b])


def _fit_lengths(len_a: int, len_b: int | None, room: int) -> tuple[int, int | None]:
    """The lengths truncate_seq_pair keeps, without its token-at-a-time loop (which pops the
    longer side, a on ties): the shorter side whole when the longer one still gets as much, else
    room // 2 for a and the rest for b."""
    if len_b is None:
        return min(len_a, room), None
    if len_a + len_b <= room:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short >= room:
        return room // 2, room - room // 2
    return (len_a, room - len_a) if len_a == short else (room - len_b, len_b)


def encode_examples(tok: Tokenizer, texts: list[str], pairs: list[str] | None, seq_len: int,
                    bert_style: bool) -> dict[str, np.ndarray]:
    """inputs, token_types, attention_mask (N, L) int32 of each text (pair)."""
    return encode_rows(tok, tok.encode_batch(texts),
                       tok.encode_batch(pairs) if pairs is not None else None, seq_len, bert_style)


def encode_rows(tok: Tokenizer, ids_a: Sequence[np.ndarray], ids_b: Sequence[np.ndarray] | None,
                seq_len: int, bert_style: bool) -> dict[str, np.ndarray]:
    """inputs, token_types, attention_mask (N, L) int32 of each example's token ids (pair)."""
    n = len(ids_a)
    ids_b = ids_b if ids_b is not None else [None] * n
    inputs = np.full((n, seq_len), tok.pad_id, np.int32)
    types = np.zeros((n, seq_len), np.int32)
    mask = np.zeros((n, seq_len), np.int32)
    for i, (a, b) in enumerate(zip(ids_a, ids_b)):
        extra = _extra_tokens(b is not None, bert_style)
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


def _extra_tokens(paired: bool, bert_style: bool) -> int:
    """The specials a row adds to its texts' tokens (see encode_rows)."""
    return (3 if paired else 2) if bert_style else (2 if paired else 1)


@register("classify", ClassifyTaskConfig)
class ClassifyTask(HeadTask):
    label_names: tuple[str, ...]
    loss_denominator = "examples"

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        cfg, d = self.run.task, self.run.data
        keys = tuple(k.strip() for k in cfg.text_keys.split(",") if k.strip())
        stream = open_labelled(cfg.dataset, tfds_data_dir=d.tfds_data_dir, text_keys=keys,
                               label_key=cfg.label_key, train_split=cfg.train_split,
                               eval_split=cfg.eval_split, max_examples=cfg.max_examples)
        tok_dir = os.path.join(workdir, "tokenizer")
        sample = (_tokenizer_sample(stream, d.spm_train_chars)
                  if not has_tokenizer(tok_dir) and d.tokenizer in ("sentencepiece", "char") else [])
        self.tokenizer = train_or_load_tokenizer(d, sample, tok_dir, log)
        key = {"task": "classify", "dataset": cfg.dataset, "tfds_data_dir": d.tfds_data_dir,
               "text_keys": list(keys), "label_key": cfg.label_key, "train_split": cfg.train_split,
               "eval_split": cfg.eval_split, "max_examples": cfg.max_examples}
        cache = example_cache.load_or_build(
            os.path.join(workdir, "data", "examples"), key, self.tokenizer,
            lambda: ((split, texts, label) for split, _, texts, label in stream), log,
            fields=("a", "b") if stream.paired else ("a",), labelled=True,
            meta=lambda: {"stats": stream.stats, "label_names": list(stream.label_names)})
        self.label_names = tuple(cache.meta["label_names"])
        log(describe(cfg.dataset, cache.meta["stats"], len(self.label_names), len(cache.fields) == 2))
        self._fields = {s: [cache.field(s, f) for f in cache.fields] for s in example_cache.SPLITS}
        self._labels = {s: np.asarray(cache.labels(s), np.int32) for s in example_cache.SPLITS}
        n_train, n_eval = len(self._labels["train"]), len(self._labels["eval"])
        self._order_examples(n_train, n_eval)
        tokens_N = sum(f.lengths() for f in self._fields["train"])
        extra = _extra_tokens(len(cache.fields) == 2, self._bert_style)
        cut = float(np.mean(tokens_N + extra >= d.seq_len)) if n_train else 0.0
        log(f"data: {n_train:,} train / {n_eval:,} eval examples, "
            f"{len(self.label_names)} classes; {cut:.1%} of train rows fill all {d.seq_len} tokens (cut)")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def model_config(self, platform: str) -> Any:
        return dataclasses.replace(self.finalized_model(self.tokenizer.vocab_size, platform),
                                   head="sequence", num_labels=self.num_labels)

    # ------------------------------------------------------------ batches

    def _take(self, split: str, idx: np.ndarray) -> Batch:
        """The rows of examples idx (-1: a padding row, weight 0) built from the cache."""
        real = idx >= 0
        safe = np.where(real, idx, 0)
        fields = self._fields[split]
        ids = [f.gather(safe) for f in fields]
        out = encode_rows(self.tokenizer, ids[0], ids[1] if len(ids) == 2 else None,
                          self.run.data.seq_len, self._bert_style)
        out["labels"] = self._labels[split][safe]
        out["attention_mask"] = out["attention_mask"] * real[:, None]
        out["weights"] = real.astype(np.float32)
        return out

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"examples": jnp.sum(batch["weights"].astype(jnp.float32))}

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
        out = classification_metrics(np.asarray(totals["confusion"]), self.label_names)
        return {"loss": float(totals["nll_sum"]) / max(float(totals["examples"]), 1.0), **out}

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()

    @functools.cached_property
    def _majority(self) -> dict[str, float]:
        """The majority-class and chance baselines over the evaluated examples (once per run)."""
        n = min(len(self._labels["eval"]), self.num_eval_batches * self.eval_batch_size)
        return majority_baselines(self._labels["train"], self._labels["eval"][:n], self.num_labels)

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


def _tokenizer_sample(stream: LabelledStream, budget: int) -> list[str]:
    """A random sample of the train examples' first texts, up to budget characters (all of
    them, in order, when they fit): what the run's own tokenizer is trained on."""
    def train_texts():
        for i, (split, _, texts, _) in enumerate(stream):
            if split != "train":
                return
            yield i, texts[0]
    return example_cache.tokenizer_sample(train_texts(), budget)
