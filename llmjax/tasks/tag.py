"""Token labelling (fine-tuning): a tag per word, read from a token head (llmjax.models.heads).

Data: a tagged set from llmjax.data.tagged (the embedded stdlib_roles task, the role of each
identifier in standard-library code; a prepared tfds dataset such as conll2003; JSON Lines of
tokens and tags), tokenized once with the run's tokenizer (the pretraining run's, with
config.init_from; else one trained on a random sample of the train texts) into a memory-mapped
cache in the workdir (llmjax.data.example_cache, per-token columns):

  ids        the text's token ids, encoded in segments that each end where a word ends (the gap
             before a word goes with it), so no piece spans two words (Hugging Face's
             is_split_into_words); `align`
  first      per word, the index of its first piece: the piece of that segment that first
             overlaps the word's characters (-1: the tokenizer gave it none)
  word_tags  per word, its tag
  baseline   per eval word, the baseline's tag (below)

A batch's rows are built when it is drawn, in the family's layout (classify.encode_rows): BERT
`[CLS] text [SEP]`, GPT and the LSTM `text EOS`, cut to data.seq_len; the first piece of each
word carries its tag, every other position -1 (ignored). The data line counts the words cut off.

Objective: token cross-entropy summed over the labelled positions, divided by the labelled
positions of the whole batch (a train row's loss and accuracy are over those positions). Eval:
loss (the same mean), then on the host (a second forward pass of the evaluated batches) the
argmax at each word's first piece, as word tags (a word cut off, or without a piece, is
predicted "O"), scored with llmjax.evaluation.spans (seqeval's definitions): word accuracy and
span precision/recall/F1, micro and per type.

Baseline: each word's most frequent train tag (a word never seen in train: the most frequent
tag overall; tagged.FrequentTag), fitted while the cache is built and scored the same way on
the same eval words (it sees every word: nothing is cut for it).

Shape key: B batch, L length (seq_len), K tags, N words of an example, P its pieces.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import check_fraction, check_positive
from llmjax.data import example_cache
from llmjax.data.tagged import (FrequentTag, TaggedStream, check_tagged_spec, describe, files_key,
                                open_tagged, words_of)
from llmjax.data.tokenizers import Tokenizer, has_tokenizer, train_or_load_tokenizer
from llmjax.evaluation.spans import span_scores
from llmjax.tasks.base import Batch, Log
from llmjax.tasks.classify import _extra_tokens, encode_rows
from llmjax.tasks.head_task import HeadTask
from llmjax.tasks.registry import register
from llmjax.training.objectives import token_nll

COLUMNS = ("ids", "first", "word_tags", "baseline")
SPAN_KEYS = ("precision", "recall", "f1")


@dataclasses.dataclass(frozen=True)
class TagTaskConfig:
    head: ClassVar[str] = "token"  # the model head it trains (llmjax.models.heads)
    name: str = "tag"  # the task, looked up in llmjax.tasks.registry
    dataset: str = "stdlib_roles"  # stdlib_roles (embedded) | tfds:NAME[/CONFIG] (e.g. conll2003) | jsonl:GLOB | jsonl:TRAIN_GLOB,EVAL_GLOB
    tokens_key: str = ""  # tfds: the sequence of Text tokens ('' = the only one)
    tags_key: str = ""  # tfds: the sequence of ClassLabel tags ('' = ner, else the only one)
    train_split: str = "train"  # tfds split to train on
    eval_split: str = ""  # tfds split to evaluate on ('' = validation, else dev, else test)
    val_fraction: float = 0.1  # jsonl:GLOB: the eval share (by file from 10 files, else the last examples)
    max_examples: int = 0  # cap on training examples (0 = all)

    def validate(self) -> None:
        check_tagged_spec(self.dataset)
        check_positive("task.max_examples", self.max_examples, allow_zero=True)
        check_fraction("task.val_fraction", self.val_fraction, low_open=True)


def align(tok: Tokenizer, texts: Sequence[str], spans: Sequence[np.ndarray]
          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per text: its ids int32 (P,) and first_N int32, the index of each word's first piece
    (-1: none). The text is encoded in segments that end where a word ends (the last one runs to
    the text's end), with encode_with_offsets: a word's first piece is the first of its
    segment's pieces whose character span overlaps the word's."""
    segments, cuts = [], []
    for text, spans_Nx2 in zip(texts, spans):
        ends = spans_Nx2[:-1, 1].tolist()
        bounds = [0, *ends, len(text)]
        cuts.append(bounds)
        segments.extend(text[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    encoded = tok.encode_with_offsets(segments)
    out, at = [], 0
    for spans_Nx2, bounds in zip(spans, cuts):
        pieces, first, base = [], np.full(len(spans_Nx2), -1, np.int32), 0
        for k in range(len(bounds) - 1):
            ids, offsets_Px2 = encoded[at + k]
            if k < len(spans_Nx2):
                s, e = spans_Nx2[k, 0] - bounds[k], spans_Nx2[k, 1] - bounds[k]
                hit_P = (offsets_Px2[:, 1] > s) & (offsets_Px2[:, 0] < e)
                if hit_P.any():
                    first[k] = base + int(np.argmax(hit_P))
            pieces.append(np.asarray(ids, np.int32))
            base += len(ids)
        at += len(bounds) - 1
        out.append((np.concatenate(pieces) if pieces else np.zeros(0, np.int32), first))
    return out


def encode_examples(tok: Tokenizer, records: Sequence[tuple]) -> dict[str, list[np.ndarray]]:
    """The cache's COLUMNS of records (split, (text,), None, spans_Nx2, tags, baseline tags or None)."""
    aligned = align(tok, [r[1][0] for r in records], [r[3] for r in records])
    return {"ids": [ids for ids, _ in aligned], "first": [first for _, first in aligned],
            "word_tags": [np.asarray(r[4], np.int32) for r in records],
            "baseline": [np.asarray(r[5] if r[5] is not None else [], np.int32) for r in records]}


def _records(stream: TaggedStream, baseline: FrequentTag) -> Iterator[tuple]:
    """The stream as cache records; the baseline learns train's words (read first) and tags
    eval's."""
    for split, _, text, spans_Nx2, tags in stream:
        words = words_of(text, spans_Nx2)
        if split == "train":
            baseline.add(words, tags)
        yield split, (text,), None, spans_Nx2, tags, None if split == "train" else baseline.predict(words)


@register("tag", TagTaskConfig)
class TagTask(HeadTask):
    tag_names: tuple[str, ...]
    loss_denominator = "labelled"

    @property
    def _room(self) -> int:
        """Pieces of an example a row holds."""
        return self.run.data.seq_len - _extra_tokens(False, self._bert_style)

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        cfg, d = self.run.task, self.run.data
        stream = open_tagged(cfg.dataset, tfds_data_dir=d.tfds_data_dir, tokens_key=cfg.tokens_key,
                             tags_key=cfg.tags_key, train_split=cfg.train_split,
                             eval_split=cfg.eval_split, val_fraction=cfg.val_fraction,
                             max_examples=cfg.max_examples)
        tok_dir = os.path.join(workdir, "tokenizer")
        sample = (_tokenizer_sample(stream, d.spm_train_chars)
                  if not has_tokenizer(tok_dir) and d.tokenizer not in ("byte", "hf") else [])
        self.tokenizer = train_or_load_tokenizer(d, sample, tok_dir, log)
        key = {"task": "tag", "dataset": cfg.dataset, "tfds_data_dir": d.tfds_data_dir,
               "tokens_key": cfg.tokens_key, "tags_key": cfg.tags_key, "train_split": cfg.train_split,
               "eval_split": cfg.eval_split, "val_fraction": cfg.val_fraction,
               "max_examples": cfg.max_examples, "files": files_key(cfg.dataset)}
        baseline = FrequentTag(len(stream.tag_names))
        cache = example_cache.load_or_build(
            os.path.join(workdir, "data", "examples"), key, self.tokenizer,
            lambda: _records(stream, baseline), log, fields=COLUMNS, labelled=False,
            encode=encode_examples,
            meta=lambda: {"stats": stream.stats, "tag_names": list(stream.tag_names)})
        self.tag_names = tuple(cache.meta["tag_names"])
        log(describe(cfg.dataset, cache.meta["stats"], len(self.tag_names)))
        self._columns = {s: {c: cache.field(s, c) for c in COLUMNS} for s in example_cache.SPLITS}
        n_train, n_eval = (len(self._columns[s]["ids"]) for s in example_cache.SPLITS)
        self._order_examples(n_train, n_eval)
        cut = {s: self._cut_words(s) for s in example_cache.SPLITS}
        log(f"data: {n_train:,} train / {n_eval:,} eval examples, {len(self.tag_names)} tags; rows of "
            f"{d.seq_len} tokens cut off {cut['train'][0]:,} of {cut['train'][1]:,} train words "
            f"({cut['train'][0] / max(cut['train'][1], 1):.1%}) and {cut['eval'][0]:,} of "
            f"{cut['eval'][1]:,} eval words ({cut['eval'][0] / max(cut['eval'][1], 1):.1%}: predicted O)")

    def _cut_words(self, split: str) -> tuple[int, int]:
        """(words whose first piece a row cannot hold, or without a piece; words) of a split."""
        first = np.asarray(self._columns[split]["first"].flat)
        return int(np.sum((first < 0) | (first >= self._room))), len(first)

    @property
    def num_labels(self) -> int:
        return len(self.tag_names)

    def model_config(self, platform: str) -> Any:
        return dataclasses.replace(self.finalized_model(self.tokenizer.vocab_size, platform),
                                   head="token", num_labels=self.num_labels)

    # ------------------------------------------------------------ batches

    def _word_positions(self, split: str, example: int) -> np.ndarray:
        """int32 (N,): the row position of each word's first piece, -1 where the row has none."""
        first_N = self._columns[split]["first"][example]
        offset = 1 if self._bert_style else 0  # [CLS]
        return np.where((first_N >= 0) & (first_N < self._room), first_N + offset, -1).astype(np.int32)

    def _take(self, split: str, idx: np.ndarray) -> Batch:
        """The rows of examples idx (-1: a padding row, no labels) built from the cache."""
        real = idx >= 0
        safe = np.where(real, idx, 0)
        out = encode_rows(self.tokenizer, self._columns[split]["ids"].gather(safe), None,
                          self.run.data.seq_len, self._bert_style)
        labels = np.full(out["inputs"].shape, -1, np.int32)
        for row, i in enumerate(idx.tolist()):
            if i >= 0:
                at_N = self._word_positions(split, i)
                tags_N = self._columns[split]["word_tags"][i]
                labels[row, at_N[at_N >= 0]] = tags_N[at_N >= 0]
        out["labels"] = labels
        out["attention_mask"] = out["attention_mask"] * real[:, None]
        return out

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"labelled": jnp.sum((batch["labels"] >= 0).astype(jnp.float32))}

    @staticmethod
    def _sums(logits_BxLxK: jax.Array, labels_BxL: jax.Array) -> dict[str, jax.Array]:
        w_BxL = (labels_BxL >= 0).astype(jnp.float32)
        nll_BxL, _ = token_nll(logits_BxLxK, jnp.maximum(labels_BxL, 0))
        hit_BxL = (jnp.argmax(logits_BxLxK, -1) == labels_BxL).astype(jnp.float32)
        return {"nll_sum": jnp.sum(nll_BxL * w_BxL), "hits": jnp.sum(hit_BxL * w_BxL),
                "labelled": jnp.sum(w_BxL)}

    def objective(self, model, params, batch, denoms, rng):
        sums = self._sums(self._logits(model, params, batch, deterministic=False, rng=rng), batch["labels"])
        return sums["nll_sum"], {"nll_sum": sums["nll_sum"], "hits": sums["hits"]}

    def train_metrics(self, sums, denoms):
        n = jnp.maximum(denoms["labelled"], 1.0)
        return {"loss": sums["nll_sum"] / n, "accuracy": sums["hits"] / n}

    def eval_sums(self, model, params, batch):
        return self._sums(self._logits(model, params, batch, deterministic=True), batch["labels"])

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, Any]:
        return {"loss": float(totals["nll_sum"]) / max(float(totals["labelled"]), 1.0)}

    @functools.cached_property
    def _evaluated(self) -> int:
        """Eval examples one evaluation reads: its first ones (the eval order is not shuffled)."""
        return min(len(self._columns["eval"]["ids"]), self.num_eval_batches * self.eval_batch_size)

    def _names(self, tags: np.ndarray) -> list[str]:
        return [self.tag_names[t] if t >= 0 else "O" for t in tags.tolist()]

    def decoded_metrics(self, model: nn.Module, params: Any) -> dict[str, Any]:
        """Word tags from the argmax at each word's first piece, scored as spans on the host."""
        predict = self._predictor(model)
        true, pred = [], []
        for index in range(self.num_eval_batches):
            idx = self._eval_order.indices(index)
            batch = self._take("eval", idx)
            inputs = {k: batch[k] for k in ("inputs", "attention_mask", "token_types")}
            best_BxL = np.asarray(jax.device_get(predict(params, inputs)))
            for row, i in enumerate(idx.tolist()):
                if i < 0:
                    continue
                at_N = self._word_positions("eval", i)
                tags_N = np.where(at_N >= 0, best_BxL[row, np.maximum(at_N, 0)], -1)
                true.append(self._names(self._columns["eval"]["word_tags"][i]))
                pred.append(self._names(tags_N))
        return span_metrics(span_scores(true, pred))

    def _predictor(self, model: nn.Module):
        """params, batch -> the argmax tag at every position (B, L) int32, jitted once per model."""
        if getattr(self, "_predict", (None,))[0] is not model:
            self._predict = (model, jax.jit(lambda params, batch: jnp.argmax(
                self._logits(model, params, batch, deterministic=True), -1).astype(jnp.int32)))
        return self._predict[1]

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()

    @functools.cached_property
    def _baseline(self) -> dict[str, float]:
        """The most-frequent-tag baseline on the evaluated examples (once per run)."""
        cols = self._columns["eval"]
        true = [self._names(cols["word_tags"][i]) for i in range(self._evaluated)]
        pred = [self._names(cols["baseline"][i]) for i in range(self._evaluated)]
        scores = span_metrics(span_scores(true, pred))
        return {f"baseline_{k}": scores[k] for k in ("accuracy", *(f"span_{m}" for m in SPAN_KEYS))}

    def describe(self, log: Log) -> None:
        b = self._baseline
        log(f"eval: {self.num_eval_batches} batches of {self.eval_batch_size} ({self._evaluated:,} "
            f"examples); baseline (each word's most frequent train tag): span P/R/F1 "
            f"{b['baseline_span_precision']:.4f}/{b['baseline_span_recall']:.4f}/"
            f"{b['baseline_span_f1']:.4f}, accuracy {b['baseline_accuracy']:.4f}")

    def baselines(self) -> dict[str, float]:
        return dict(self._baseline)

    def eval_line(self, m: dict[str, Any]) -> str:
        if "span_f1" not in m:
            return f"eval loss {m['loss']:.4f}"
        return (f"eval loss {m['loss']:.4f}, accuracy {m['accuracy']:.4f}, span P/R/F1 "
                f"{m['span_precision']:.4f}/{m['span_recall']:.4f}/{m['span_f1']:.4f} "
                f"(most frequent tag: span F1 {self._baseline['baseline_span_f1']:.4f}, "
                f"accuracy {self._baseline['baseline_accuracy']:.4f})")


def span_metrics(s: dict) -> dict[str, Any]:
    """span_scores' result as eval metrics (the task's and its classic baseline's, llmjax.classic.tag):
    accuracy, span_precision/recall/f1, per_type."""
    return {"accuracy": s["accuracy"], **{f"span_{k}": s[k] for k in SPAN_KEYS},
            "spans_true": s["spans_true"], "spans_pred": s["spans_pred"], "per_type": s["per_type"]}


def _tokenizer_sample(stream: TaggedStream, budget: int) -> list[str]:
    """A random sample of the train texts, up to budget characters (all of them, in order,
    when they fit): what the run's own tokenizer is trained on."""
    def train_texts():
        for i, (split, _, text, _, _) in enumerate(stream):
            if split != "train":
                return
            yield i, text
    return example_cache.tokenizer_sample(train_texts(), budget)
