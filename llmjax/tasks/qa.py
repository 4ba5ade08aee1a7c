"""Extractive question answering (fine-tuning): the answer is a span of the context, found by a
span head's start and end logits (llmjax.models.heads).

Data: (question, context, answers) from llmjax.data.qa_sources (the embedded stdlib_docstring_qa
task, SQuAD v1.1 JSON, tfds:squad), tokenized once with the run's tokenizer (the pretraining
run's under init_from; else one trained on a sample of the train texts) into a memory-mapped
example cache holding per example the question's and the context's ids, the context tokens'
character offsets (Tokenizer.encode_with_offsets), each answer's token and character span and the
example id. Rows are the question and one window of the context (llmjax.data.qa_windows, Hugging
Face run_qa's: windows of the room a row leaves, task.doc_stride tokens shared by neighbours); a
training window without the whole answer points start and end at position 0. Every window is a
training example: batches are drawn over windows as a pure function of (seed, step).

Objective: (start cross-entropy + end cross-entropy) / 2 per window, summed, over the update's
windows. Eval: the same loss, then per window the best valid span on the device (among the
task.n_best highest start and end logits inside the window's context: start <= end, at most
task.max_answer_len tokens), and on the host each question's best span over its windows, mapped
back to the context's characters through the offsets and scored with SQuAD v1.1's exact match and
F1 (llmjax.evaluation.squad) against every gold answer. Baseline, over the same questions: on the
embedded task the first sentence after the first mention of the function's name in the context
(docstring_qa.baseline_answer); on other data, whose questions name no function, the context
sentence sharing the most words with the question (a sliding-window-style lexical baseline).

Shape key: B batch, L length (seq_len), K n_best candidates, W eval windows.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import ConfigError, UserError, check_positive
from llmjax.data import docstring_qa, example_cache, qa_windows, sources
from llmjax.data.atomic import atomic_write
from llmjax.data.qa_sources import QAStream, dataset_kind, open_qa, split_names
from llmjax.data.tokenizers import Tokenizer, has_tokenizer, train_or_load_tokenizer
from llmjax.evaluation.squad import normalize_answer, squad_scores
from llmjax.tasks.base import Batch, Log
from llmjax.tasks.classify import encode_rows
from llmjax.tasks.head_task import HeadTask
from llmjax.tasks.registry import register
from llmjax.training.objectives import token_nll

PREDICTIONS_JSON = "eval_predictions.json"
COLUMNS = ("question", "context", "offsets", "answers", "id")
_EVERY = 1 << 62  # keep_text's count for all of a split's texts
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


@dataclasses.dataclass(frozen=True)
class QATaskConfig:
    head: ClassVar[str] = "span"  # the model head it trains (llmjax.models.heads)
    name: str = "qa"  # the task, looked up in llmjax.tasks.registry
    dataset: str = docstring_qa.SPEC  # stdlib_docstring_qa (embedded) | squad_json:PATH with {split} | tfds:squad
    splits: str = ""  # 'TRAIN,EVAL': tfds split names, or the names squad_json fills {split} with ('' = train,validation; squad_json train,dev)
    max_examples: int = 0  # cap on training questions (0 = all)
    max_answer_len: int = 64  # longest answer decoded, in tokens
    doc_stride: int = 64  # context tokens neighbouring windows share (Hugging Face run_qa's doc_stride)
    n_best: int = 20  # start and end candidates per window the decoding pairs up
    show_examples: int = 3  # eval questions printed with their decoded and gold answers at the end

    def validate(self) -> None:
        try:
            split_names(self.dataset, self.splits)
        except UserError as e:
            raise ConfigError(str(e)) from None
        for key in ("max_examples", "doc_stride", "show_examples"):
            check_positive(f"task.{key}", getattr(self, key), allow_zero=True)
        for key in ("max_answer_len", "n_best"):
            check_positive(f"task.{key}", getattr(self, key))


def encode_examples(tok: Tokenizer, records: Sequence[tuple]) -> dict[str, list[np.ndarray]]:
    """The cache's columns of records (split, (question, context), (id, answers)): question and
    context ids, the context's offsets_Nx2 flattened, int32 (first token, last token, first char,
    end char) per answer, the id's UTF-8 bytes."""
    q_ids = tok.encode_batch([r[1][0] for r in records])
    contexts = tok.encode_with_offsets([r[1][1] for r in records])
    out: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for record, q, (ids, offsets_Nx2) in zip(records, q_ids, contexts):
        example_id, answers = record[2]
        spans = []
        for start, text in answers:
            spans.extend([*qa_windows.answer_tokens(offsets_Nx2, start, start + len(text)),
                          start, start + len(text)])
        out["question"].append(np.asarray(q, np.int32))
        out["context"].append(np.asarray(ids, np.int32))
        out["offsets"].append(offsets_Nx2.astype(np.int32).reshape(-1))
        out["answers"].append(np.asarray(spans, np.int32))
        out["id"].append(np.frombuffer(example_id.encode("utf-8"), np.uint8))
    return out


def best_window_spans(logits_BxLx2: jax.Array, first_B: jax.Array, length_B: jax.Array, n_best: int,
                      max_answer_len: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(score, start, end) (B,) of each window's best valid span: among the n_best highest start
    and end logits inside its context (positions first .. first + length - 1), the pair with the
    highest start + end logit whose start <= end and whose length is at most max_answer_len
    (Hugging Face's postprocess_qa_predictions); score -inf where none is valid."""
    B, L, _ = logits_BxLx2.shape
    pos_L = jnp.arange(L)
    inside_BxL = (pos_L[None] >= first_B[:, None]) & (pos_L[None] < (first_B + length_B)[:, None])
    start_BxL = jnp.where(inside_BxL, logits_BxLx2[..., 0].astype(jnp.float32), -jnp.inf)
    end_BxL = jnp.where(inside_BxL, logits_BxLx2[..., 1].astype(jnp.float32), -jnp.inf)
    k = min(n_best, L)
    s_val_BxK, s_pos_BxK = jax.lax.top_k(start_BxL, k)
    e_val_BxK, e_pos_BxK = jax.lax.top_k(end_BxL, k)
    length_BxKxK = e_pos_BxK[:, None, :] - s_pos_BxK[:, :, None] + 1
    valid_BxKxK = ((length_BxKxK >= 1) & (length_BxKxK <= max_answer_len)
                   & jnp.isfinite(s_val_BxK)[:, :, None] & jnp.isfinite(e_val_BxK)[:, None, :])
    score_BxKK = jnp.where(valid_BxKxK, s_val_BxK[:, :, None] + e_val_BxK[:, None, :], -jnp.inf).reshape(B, k * k)
    best_B = jnp.argmax(score_BxKK, axis=1)
    rows_B = jnp.arange(B)
    return score_BxKK[rows_B, best_B], s_pos_BxK[rows_B, best_B // k], e_pos_BxK[rows_B, best_B % k]


def best_windows(score_W: np.ndarray, first_window_N: np.ndarray, num_windows: int) -> np.ndarray:
    """int64 (N,): each example's window of the highest score (its windows are first_window[i] ..
    first_window[i + 1] - 1, the last example's up to num_windows); -1 where none has a finite
    score (no valid span in any window)."""
    bounds = np.append(first_window_N, num_windows)
    out = np.full(len(first_window_N), -1, np.int64)
    for i, (a, b) in enumerate(itertools.pairwise(bounds.tolist())):
        if b > a and np.isfinite(score_W[a:b]).any():
            out[i] = a + int(np.argmax(score_W[a:b]))
    return out


def overlap_sentence(question: str, context: str) -> str:
    """The context sentence sharing the most normalised words with the question (the first of
    those tied): the lexical baseline for questions that name no function."""
    words = set(normalize_answer(question).split())
    best, best_overlap = "", -1
    for m in _SENTENCE.finditer(context):
        overlap = len(words & set(normalize_answer(m.group(0)).split()))
        if overlap > best_overlap and m.group(0).strip():
            best, best_overlap = m.group(0).strip(), overlap
    return best


def baseline_prediction(dataset: str, question: str, context: str) -> str:
    """The baseline's answer (see the module docstring)."""
    name = docstring_qa.question_name(question) if dataset == docstring_qa.SPEC else None
    return docstring_qa.baseline_answer(name, context) if name else overlap_sentence(question, context)


class _Ids:
    """Example ids of a split, read from the cache's UTF-8 column when asked."""

    def __init__(self, ragged: example_cache.Ragged):
        self.ragged = ragged

    def __getitem__(self, i: int) -> str:
        return self.ragged[i].tobytes().decode("utf-8")


@dataclasses.dataclass
class _Split:
    """One split's examples in the cache and its windows."""
    question: example_cache.Ragged
    context: example_cache.Ragged
    offsets: example_cache.Ragged
    answers: example_cache.Ragged
    ids: _Ids
    room_N: np.ndarray
    example_W: np.ndarray
    start_W: np.ndarray

    @property
    def first_window_N(self) -> np.ndarray:
        counts_N = np.bincount(self.example_W, minlength=len(self.room_N))
        return np.concatenate([[0], np.cumsum(counts_N)[:-1]]).astype(np.int64)


def _holds_answer(split: _Split) -> np.ndarray:
    """bool (windows,): whether each window holds its example's (first) answer whole."""
    first_N, last_N = np.array([split.answers[e][:2] for e in range(len(split.room_N))], np.int64).reshape(-1, 2).T
    e_W, start_W = split.example_W, split.start_W
    end_W = start_W + np.minimum(split.room_N[e_W], split.context.lengths()[e_W] - start_W)
    return (first_N[e_W] >= start_W) & (last_N[e_W] < end_W)


@register("qa", QATaskConfig)
class QATask(HeadTask):
    tokenizer: Tokenizer
    loss_denominator = "windows"

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        cfg, d = self.run.task, self.run.data
        stream = open_qa(cfg.dataset, splits=cfg.splits, tfds_data_dir=d.tfds_data_dir,
                         val_fraction=d.val_fraction, max_examples=cfg.max_examples)
        self._workdir = workdir
        tok_dir = os.path.join(workdir, "tokenizer")
        sample = (_tokenizer_sample(stream, d.spm_train_chars)
                  if not has_tokenizer(tok_dir) and d.tokenizer in ("sentencepiece", "char") else [])
        self.tokenizer = tok = train_or_load_tokenizer(d, sample, tok_dir, log)
        key = {"task": "qa", "dataset": cfg.dataset, "tfds_data_dir": d.tfds_data_dir,
               "splits": cfg.splits, "val_fraction": d.val_fraction, "max_examples": cfg.max_examples,
               "files": _files_key(cfg.dataset, cfg.splits)}
        self._cache = cache = example_cache.load_or_build(
            os.path.join(workdir, "data", "examples"), key, tok,
            lambda: ((split, (q, context), (example_id, answers))
                     for split, example_id, q, context, answers in stream), log,
            fields=COLUMNS, labelled=False, encode=encode_examples,
            keep_text={"eval": _EVERY}, meta=lambda: {"stats": stream.stats})
        stats = cache.meta["stats"]
        log(f"data {cfg.dataset}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
        self._splits = {s: self._windows(cache, s) for s in example_cache.SPLITS}
        train, evals = self._splits["train"], self._splits["eval"]
        self._order_examples(len(train.example_W), len(evals.example_W))
        multi = np.mean(np.bincount(evals.example_W) > 1)
        log(f"data: {len(train.room_N):,} train questions in {len(train.example_W):,} windows "
            f"({np.mean(_holds_answer(train)):.1%} of them hold the answer, the others point at position "
            f"0), {len(evals.room_N):,} eval questions in {len(evals.example_W):,} windows ({multi:.1%} "
            f"of them with a context of more than one window); rows of {d.seq_len} tokens, windows "
            f"sharing {cfg.doc_stride} tokens")

    def _windows(self, cache: example_cache.ExampleCache, split: str) -> _Split:
        """A split's columns and windows; a question that leaves too little room is an error."""
        field = functools.partial(cache.field, split)
        question, context = field("question"), field("context")
        ids = _Ids(field("id"))
        q_len_N = question.lengths()
        room_N = qa_windows.rooms(q_len_N, self.run.data.seq_len, self._bert_style)
        qa_windows.check_rooms(room_N, self.run.task.doc_stride, self.run.data.seq_len, ids, q_len_N, split)
        example_W, start_W = qa_windows.window_table(context.lengths(), room_N, self.run.task.doc_stride)
        return _Split(question, context, field("offsets"), field("answers"), ids, room_N, example_W, start_W)

    def model_config(self, platform: str) -> Any:
        return dataclasses.replace(self.finalized_model(self.tokenizer.vocab_size, platform), head="span")

    # ------------------------------------------------------------ batches

    def _labels(self, split: _Split, w: int) -> tuple[int, int]:
        """(start, end) row positions of window w's answer (the example's first), or (0, 0)."""
        e, start = int(split.example_W[w]), int(split.start_W[w])
        first, last = split.answers[e][:2].tolist()
        length = min(int(split.room_N[e]), len(split.context[e]) - start)
        first_position = len(split.question[e]) + qa_windows.specials(self._bert_style)[1]
        return qa_windows.window_labels(first, last, start, length, first_position)

    def _take(self, name: str, idx: np.ndarray) -> Batch:
        """The rows of windows idx (-1: a padding row, weight 0)."""
        split = self._splits[name]
        real = idx >= 0
        safe = np.where(real, idx, 0)
        examples = split.example_W[safe]
        questions = split.question.gather(examples)
        windows = [split.context[e][s:s + split.room_N[e]]
                   for e, s in zip(examples.tolist(), split.start_W[safe].tolist())]
        out = encode_rows(self.tokenizer, questions, windows, self.run.data.seq_len, self._bert_style)
        labels = np.array([self._labels(split, w) for w in safe.tolist()], np.int32).reshape(-1, 2)
        out["start_positions"], out["end_positions"] = labels[:, 0], labels[:, 1]
        out["context_first"] = np.array([len(q) for q in questions], np.int32) + qa_windows.specials(self._bert_style)[1]
        out["context_len"] = np.array([len(w) for w in windows], np.int32)
        out["attention_mask"] = out["attention_mask"] * real[:, None]
        out["weights"] = real.astype(np.float32)
        out["window"] = np.where(real, idx, -1).astype(np.int32)
        return out

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"windows": jnp.sum(batch["weights"].astype(jnp.float32))}

    def _logits(self, model, params, batch, deterministic: bool, rng=None) -> jax.Array:
        logits_BxLx2 = super()._logits(model, params, batch, deterministic, rng)
        real_BxLx1 = (batch["attention_mask"] > 0)[..., None]
        return jnp.where(real_BxLx1, logits_BxLx2, -1e9)  # padding is never a start or an end

    def _sums(self, logits_BxLx2: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        w_B = batch["weights"]
        start_nll_B, _ = token_nll(logits_BxLx2[..., 0], batch["start_positions"])
        end_nll_B, _ = token_nll(logits_BxLx2[..., 1], batch["end_positions"])
        hits_B = ((jnp.argmax(logits_BxLx2[..., 0], -1) == batch["start_positions"])
                  & (jnp.argmax(logits_BxLx2[..., 1], -1) == batch["end_positions"])).astype(jnp.float32)
        return {"nll_sum": jnp.sum((start_nll_B + end_nll_B) / 2 * w_B), "hits": jnp.sum(hits_B * w_B)}

    def objective(self, model, params, batch, denoms, rng):
        sums = self._sums(self._logits(model, params, batch, deterministic=False, rng=rng), batch)
        return sums["nll_sum"], sums

    def train_metrics(self, sums, denoms):
        n = jnp.maximum(denoms["windows"], 1.0)
        return {"loss": sums["nll_sum"] / n, "span_accuracy": sums["hits"] / n}

    def eval_sums(self, model, params, batch):
        logits_BxLx2 = self._logits(model, params, batch, deterministic=True)
        cfg, W = self.run.task, len(self._splits["eval"].example_W)
        score_B, start_B, end_B = best_window_spans(logits_BxLx2, batch["context_first"], batch["context_len"],
                                                    cfg.n_best, cfg.max_answer_len)
        # Each window's best span lands in its own slot (the others add 0), so the loop's sums
        # over batches are the per-window results.
        slot_B = jnp.where(batch["window"] >= 0, batch["window"], W)
        scatter = lambda v_B: jnp.zeros(W, jnp.float32).at[slot_B].add(v_B.astype(jnp.float32), mode="drop")
        return {**self._sums(logits_BxLx2, batch), "windows": jnp.sum(batch["weights"]),
                "span_score": scatter(score_B), "span_start": scatter(start_B), "span_end": scatter(end_B)}

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, Any]:
        n = max(float(totals["windows"]), 1.0)
        predictions = self._decode(np.asarray(totals["span_score"]), np.asarray(totals["span_start"]),
                                   np.asarray(totals["span_end"]))
        self._predictions = predictions
        return {"loss": float(totals["nll_sum"]) / n, "span_accuracy": float(totals["hits"]) / n,
                **squad_scores(predictions, self._golds[:len(predictions)]), "questions": len(predictions)}

    # ------------------------------------------------------------ decoding (host)

    @property
    def _evaluated(self) -> int:
        """Eval questions whose every window the eval reads (all, unless train.eval_steps cuts it)."""
        split = self._splits["eval"]
        covered = min(self.num_eval_batches * self.eval_batch_size, len(split.example_W))
        if covered == len(split.example_W):
            return len(split.room_N)
        return int(split.example_W[covered])  # examples before the first one cut short

    def _decode(self, score_W: np.ndarray, start_W: np.ndarray, end_W: np.ndarray) -> list[str]:
        """The text of each evaluated question's best span over its windows ('' where no window
        has a valid span)."""
        split, n = self._splits["eval"], self._evaluated
        first = qa_windows.specials(self._bert_style)[1]
        best_N = best_windows(score_W, split.first_window_N[:n], int(split.first_window_N[n]) if n < len(split.room_N)
                              else len(split.example_W))
        out = []
        for e, w in enumerate(best_N.tolist()):
            if w < 0:
                out.append("")
                continue
            offset = int(split.start_W[w]) - len(split.question[e]) - first
            offsets_Nx2 = split.offsets[e].reshape(-1, 2)
            a, b = qa_windows.token_chars(offsets_Nx2, int(start_W[w]) + offset, int(end_W[w]) + offset)
            out.append(self._contexts[e][a:b].strip())
        return out

    @functools.cached_property
    def _contexts(self) -> list[str]:
        return self._cache.texts("eval", "text1", _EVERY)  # encode= keeps the record's texts as text0, text1

    @functools.cached_property
    def _questions(self) -> list[str]:
        return self._cache.texts("eval", "text0", _EVERY)

    @functools.cached_property
    def _golds(self) -> list[list[str]]:
        """Every gold answer text of each eval question (SQuAD's dev set has several)."""
        split = self._splits["eval"]
        golds = []
        for e, context in enumerate(self._contexts):
            spans = split.answers[e].reshape(-1, 4)
            golds.append([context[a:b] for a, b in spans[:, 2:].tolist()])
        return golds

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()

    @functools.cached_property
    def _baseline(self) -> dict[str, Any]:
        """The baseline's EM and F1 over the evaluated questions (once per run)."""
        n = self._evaluated
        preds = [baseline_prediction(self.run.task.dataset, q, c)
                 for q, c in zip(self._questions[:n], self._contexts[:n])]
        scores = squad_scores(preds, self._golds[:n])
        what = ("first sentence after the first mention of the name" if self.run.task.dataset == docstring_qa.SPEC
                else "the context sentence sharing the most words with the question")
        return {"baseline": what, "baseline_exact_match": scores["exact_match"], "baseline_f1": scores["f1"]}

    def describe(self, log: Log) -> None:
        b = self._baseline
        log(f"eval: {self._evaluated:,} questions in {self.num_eval_batches} batches of {self.eval_batch_size} "
            f"windows; baseline ({b['baseline']}): EM {b['baseline_exact_match']:.2f}, F1 {b['baseline_f1']:.2f}")

    def baselines(self) -> dict[str, Any]:
        return dict(self._baseline)

    def eval_line(self, m: dict[str, Any]) -> str:
        b = self._baseline
        return (f"eval loss {m['loss']:.4f}, span accuracy {m['span_accuracy']:.4f}, EM {m['exact_match']:.2f}, "
                f"F1 {m['f1']:.2f} over {m['questions']:,} questions (baseline EM "
                f"{b['baseline_exact_match']:.2f}, F1 {b['baseline_f1']:.2f})")

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """The last eval's answers to PREDICTIONS_JSON (SQuAD's predictions format, {id: answer},
        which its official script and Hugging Face's run_qa read), and a few of them beside the
        gold ones."""
        predictions = getattr(self, "_predictions", [])
        if predictions and jax.process_index() == 0:
            ids = self._splits["eval"].ids
            text = json.dumps({ids[e]: p for e, p in enumerate(predictions)}, indent=0, ensure_ascii=False)
            atomic_write(os.path.join(self._workdir, PREDICTIONS_JSON), lambda f: f.write(text.encode("utf-8")))
            log(f"eval answers: {PREDICTIONS_JSON} in the workdir")
        shown = predictions[:self.run.task.show_examples]
        if shown:
            log("decoded eval questions (the last eval's answers):")
        for q, pred, golds in zip(self._questions, shown, self._golds):
            log(f"--- {q}\n    decoded: {pred!r}\n    gold:    {golds[0]!r}")


def _files_key(dataset: str, splits: str) -> str:
    """squad_json: a hash of its two files' paths, sizes and modification times ('' otherwise)."""
    if dataset_kind(dataset) != "squad_json":
        return ""
    pattern = os.path.expanduser(dataset[len("squad_json:"):])
    return sources.files_digest([pattern.replace("{split}", s) for s in split_names(dataset, splits)])


def _tokenizer_sample(stream: QAStream, budget: int) -> list[str]:
    """A random sample of the train questions and contexts (each context once), up to budget
    characters: what the run's own tokenizer is trained on."""
    def train_texts():
        last = None
        for i, (split, _, question, context, _) in enumerate(stream):
            if split != "train":
                return
            yield 1 << 39 | i, question
            if context != last:
                yield i, context
            last = context
    return example_cache.tokenizer_sample(train_texts(), budget)
