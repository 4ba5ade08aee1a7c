"""Word2Vec training (skip-gram or CBOW with negative sampling) through the one loop.

Data: the run's token streams (llmjax.data.pipeline: the tokenizer's pieces, or words with
data.tokenizer="word"), turned into batches of (center, context, negatives) by
llmjax.data.context_pairs as a pure function of (seed, step): train.batch_size is the number of
corpus tokens one update reads (before subsampling: what words/s counts). Objective: the
negative-sampling loss, -log s(v'_o . h) - sum_j log s(-v'_j . h), summed over the rows.
word2vec.c and gensim take one SGD step of lr per example. A batch instead moves each row of
each table once, by lr times the *mean* gradient of the row's occurrences in the batch
(llmjax.models.word2vec.take_rows: summed, a frequent token's thousand simultaneous steps drive
every vector onto one direction). So the update is the gradient of the loss sum
(loss_denominator "updates" is 1) that take_rows turns into per-row means. The optimizer is the
loop's: configs/word2vec_stdlib.py uses Adam (no weight decay or clipping) at lr 0.1 decaying
linearly (optim.schedule="linear"). Measured on 1M stdlib words (AUC of the similarity check
below; gensim: 0.91 after one epoch, 0.97 after three): plain SGD, word2vec.c's rule, does not
survive batching. Summed gradients collapse every vector onto one direction at any lr (AUC
0.58); row means learn at lr 1.0 (0.85 after two epochs of 8k-token batches) but collapse at 0.5
and diverge at 2.5. Adam's per-coordinate steps absorb the spread of token frequencies: after
one epoch AUC 0.65, 0.79, 0.88 at lr 0.01, 0.03, 0.1, and 0.97 after three epochs at 0.1 (with
summed gradients instead of row means, 0.83 where row means gave 0.91).

Speed. On a CPU a step is dominated by looking up, and scattering the gradients of, 1 + k output
rows per row; XLA:CPU's batched lookups and scatters cost what they cost however the same update
is written (unique rows per batch, segment sums, fused products: none faster, measured).
model.negative_group G > 1, off by default and not gensim's estimator, lets G consecutive rows
share one draw of k negatives, each row's loss unchanged in form: measured on 1M stdlib words,
one epoch of 16,384-word updates on a loaded 2-core CPU, G=64 trained 2.5x the words/s of
per-row negatives (about 235k against 93k tokens/s); two seeds: similarity AUC 0.94 and 0.80
against 0.83 and 0.83, held-out loss 3.06 and 3.07 against 2.66 and 2.75 (each row's negatives
have the same law either way, so the eval losses compare): worse vectors by the loss, as good by
the similarity check within its spread.

Eval: the held-out loss (the same sampling over the validation stream with a fixed seed), and a
similarity check on the pairs below; at the end, the nearest neighbours of a few frequent tokens
and the vectors saved to workdir/embeddings.npy (llmjax.data.embeddings_file): every id of the
tokenizer with its fingerprint (model.embed_init can load them), or with data.tokenizer="word"
the words of at least min_count train occurrences, fingerprint null.

The similarity check. A general word-similarity set (WordSim-353, SimLex) barely overlaps the
standard library's vocabulary, so the set is hand-made from pairs that the library itself uses
as counterparts: operations and their inverses (read/write, encode/decode, acquire/release),
paired values and types (True/False, int/float, stdin/stdout), the two ends of a range
(start/end, min/max). Such pairs occur in the same contexts (the same argument lists, the same
kind of statement), which is what a distributional model can learn; they are not synonyms,
so the scores are relative. The unrelated pairs are the same words re-paired (word a of pair i
with word b of pair i + n/2), so both lists have the same words and frequencies and only the
pairing differs. Reported: the mean cosine of each list, and the AUC (probability that a
related pair scores above an unrelated one; 0.5 = chance). Pairs with a word the vocabulary
lacks (or, over pieces, that is not one piece) are left out and counted.

Shape key: R rows, C input slots, K 1 + k candidates, V padded vocabulary, D dim.
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

from llmjax.config import check_choice, check_positive, fail
from llmjax.data.context_pairs import ContextPairs, capacity, keep_probabilities, noise_distribution, usable
from llmjax.data.embeddings_file import save_embeddings
from llmjax.data.pipeline import Prepared, prepare
from llmjax.tasks.base import Batch, Log, Task
from llmjax.tasks.registry import register

RELATED = (("read", "write"), ("get", "set"), ("True", "False"), ("int", "float"),
           ("open", "close"), ("encode", "decode"), ("start", "end"), ("min", "max"),
           ("keys", "values"), ("load", "dump"), ("loads", "dumps"), ("acquire", "release"),
           ("stdout", "stderr"), ("stdin", "stdout"), ("lower", "upper"), ("add", "remove"),
           ("input", "output"), ("request", "response"), ("client", "server"), ("send", "recv"),
           ("key", "value"), ("first", "last"), ("width", "height"), ("x", "y"),
           ("src", "dst"), ("year", "month"), ("hour", "minute"), ("args", "kwargs"),
           ("list", "tuple"), ("str", "bytes"), ("pack", "unpack"), ("compress", "decompress"),
           ("enable", "disable"), ("before", "after"), ("parent", "child"), ("host", "port"),
           ("left", "right"), ("head", "tail"), ("reader", "writer"), ("username", "password"))
# The same words re-paired: a of pair i with b of pair i + n/2 (no pair above meets again).
UNRELATED = tuple((a, RELATED[(i + len(RELATED) // 2) % len(RELATED)][1])
                  for i, (a, _) in enumerate(RELATED))
PROBES = ("self", "read", "int", "True", "list", "file", "error", "name")  # neighbours printed
NEIGHBOURS = 8
EVAL_SEED = 1234  # eval draws do not depend on train.seed: every run scores the same examples


@dataclasses.dataclass(frozen=True)
class Word2VecTaskConfig:
    name: str = "word2vec"  # the task, looked up in llmjax.tasks.registry
    sample: float = 1e-4  # subsampling threshold t: a token of frequency f is kept with probability (sqrt(f/t) + 1) t/f (0 = off)
    min_count: int = 5  # tokens seen fewer times in the train split take no part (gensim's min_count)

    def validate(self) -> None:
        check_choice("task.name", self.name, ("word2vec",))
        check_positive("task.sample", self.sample, allow_zero=True)
        check_positive("task.min_count", self.min_count, allow_zero=True)


def negative_sampling_loss(scores_RxK: jax.Array, negative_mask_RxN: jax.Array) -> jax.Array:
    """(R,) -log s(score of the true token) - sum_j log s(-score of negative j), float32; a
    negative that is the true token itself is masked out (word2vec.c skips it)."""
    positive_R = -jax.nn.log_sigmoid(scores_RxK[:, 0])
    negative_R = -jnp.sum(jax.nn.log_sigmoid(-scores_RxK[:, 1:]) * negative_mask_RxN, axis=1)
    return positive_R + negative_R


def cosine_matrix(vectors_VxD: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors_VxD, axis=1, keepdims=True)
    return vectors_VxD / np.maximum(norms, 1e-12)


def similarity_scores(unit_VxD: np.ndarray, ids: dict[str, int]) -> dict[str, float]:
    """Mean cosine of the related and the unrelated pairs, the AUC, and the pairs scored."""
    def cosines(pairs):
        return np.array([float(unit_VxD[ids[a]] @ unit_VxD[ids[b]]) for a, b in pairs
                         if a in ids and b in ids])
    related, unrelated = cosines(RELATED), cosines(UNRELATED)
    if not len(related) or not len(unrelated):
        return {"sim_pairs": float(len(related))}
    diff = related[:, None] - unrelated[None, :]
    auc = float(np.mean((diff > 0) + 0.5 * (diff == 0)))
    return {"sim_related": float(related.mean()), "sim_unrelated": float(unrelated.mean()),
            "sim_auc": auc, "sim_pairs": float(len(related))}


def vocabulary_ids(pieces: list[str], counts_V: np.ndarray, usable_V: np.ndarray) -> dict[str, int]:
    """word -> id of the tokens that take part: a word is its own piece, or sentencepiece's
    word-initial "\u2581word" (the more frequent of the two)."""
    ids: dict[str, int] = {}
    for i in np.flatnonzero(usable_V):
        word = pieces[i][1:] if pieces[i].startswith("\u2581") else pieces[i]
        if word and (word not in ids or counts_V[i] > counts_V[ids[word]]):
            ids[word] = int(i)
    return ids


@register("word2vec", Word2VecTaskConfig)
class Word2VecTask(Task):
    data: Prepared
    loss_denominator = "updates"  # the loss sum's gradient (per-row means by take_rows), not a mean over examples

    def __init__(self, run: Any):
        super().__init__(run)
        if run.train.grad_accum_steps > 1:  # before any data work
            fail("train.grad_accum_steps", run.train.grad_accum_steps, "word2vec's per-row mean gradients "
                 "are taken over the whole update, which micro-batches would split: use 1 (lower "
                 "train.batch_size to use less memory)")

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        d, m, t, task = self.run.data, self.run.model, self.run.train, self.run.task
        self.workdir = workdir
        self.data = prepare(d, workdir, log=log, resuming=resuming)
        tok = self.data.tokenizer
        counts_V = np.asarray(self.data.unigram_counts, np.int64)
        self._usable = usable(counts_V, tok.special_mask(), task.min_count)
        keep_V = keep_probabilities(counts_V, self._usable, task.sample)
        noise_V = noise_distribution(counts_V, self._usable)
        common = dict(chunk_tokens=t.batch_size, keep_V=keep_V, noise_V=noise_V, eos_id=tok.eos_id,
                      window=m.window, negatives=m.negatives, skipgram=m.architecture == "skipgram",
                      group=m.negative_group)
        self._train = ContextPairs(self.data.train_tokens, seed=t.seed, shuffle=True, capacity=0, **common)
        # rows split evenly over devices, in whole negative groups
        self._capacity = self._train.capacity = capacity(self._train, math.lcm(64, m.negative_group))
        common["capacity"] = self._capacity
        max_chunks = math.ceil(d.eval_tokens / t.batch_size) if d.eval_tokens else 0
        self._eval = ContextPairs(self.data.val_tokens, seed=EVAL_SEED, shuffle=False,
                                  max_chunks=max_chunks, **common)
        self._counts = counts_V
        self._ids = vocabulary_ids(tok.pieces(), counts_V, self._usable)

    def model_config(self, platform: str) -> Any:
        return self.finalized_model(self.data.tokenizer.vocab_size, platform)

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        m = self.run.model
        rows = m.negative_group  # one whole group of rows
        inputs = jnp.zeros((rows, m.input_slots), jnp.int32)
        return model.init(rng, inputs, jnp.zeros((rows, 1 + m.negatives), jnp.int32))["params"]

    # ------------------------------------------------------------ batches

    @property
    def batch_size(self) -> int:
        return self._capacity

    @property
    def eval_batch_size(self) -> int:
        return self._capacity

    def tokens_per_step(self) -> int:
        """Corpus tokens one update reads (before subsampling): gensim's words/s counts these."""
        return self.run.train.batch_size

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._train.batch(step, rows)

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval.num_chunks)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._eval.batch(index, rows)

    # ------------------------------------------------------------ objective

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"pairs": jnp.sum(batch["weights"]), "updates": jnp.ones((), jnp.float32)}

    def _loss_sum(self, model, params, batch) -> jax.Array:
        targets_R = batch["targets"]
        candidates_RxK = jnp.concatenate([targets_R[:, None], batch["negatives"]], axis=1)
        scores_RxK = model.apply({"params": params}, batch["inputs"], candidates_RxK, batch.get("input_mask"))
        mask_RxN = (batch["negatives"] != targets_R[:, None]).astype(jnp.float32)
        return jnp.sum(negative_sampling_loss(scores_RxK, mask_RxN) * batch["weights"])

    def objective(self, model, params, batch, denoms, rng):
        loss = self._loss_sum(model, params, batch)
        return loss, {"nll_sum": loss}

    def train_metrics(self, sums, denoms):
        return {"loss": sums["nll_sum"] / jnp.maximum(denoms["pairs"], 1.0), "pairs": denoms["pairs"]}

    def eval_sums(self, model, params, batch):
        return {"nll_sum": self._loss_sum(model, params, batch), "pairs": jnp.sum(batch["weights"])}

    def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        return {"loss": float(totals["nll_sum"] / max(totals["pairs"], 1.0)), "pairs": float(totals["pairs"])}

    def decoded_metrics(self, model: nn.Module, params: Any) -> dict[str, float]:
        return similarity_scores(cosine_matrix(self._vectors(params)), self._ids)

    def _vectors(self, params: Any) -> np.ndarray:
        """The input table's rows of the tokenizer's own ids, float32 on the host."""
        table = jax.device_get(params["input"]["embedding"])
        return np.asarray(table, np.float32)[:self.data.tokenizer.vocab_size]

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        return model_cfg.flops_per_token(0) * self._capacity

    def describe(self, log: Log) -> None:
        found = [len(self._eval.examples(i)[0]["targets"]) for i in range(self.num_eval_batches)]
        lost = sum(max(f - self._capacity, 0) for f in found) / max(sum(found), 1)
        filled = sum(min(f, self._capacity) for f in found) / max(len(found) * self._capacity, 1)
        task = self.run.task
        log(f"word2vec: {int(self._usable.sum()):,} tokens of the vocabulary take part (min_count "
            f"{task.min_count}), subsampling t={task.sample:g}; {self.run.train.batch_size:,} corpus tokens "
            f"-> {self._capacity:,} rows per step; eval over {len(found)} chunks: rows {filled:.0%} filled, "
            f"{lost:.2%} of examples past the capacity")
        pairs = sum(a in self._ids and b in self._ids for a, b in RELATED)
        log(f"similarity check: {pairs} of {len(RELATED)} related pairs (and as many re-paired) in the "
            "vocabulary; chance AUC 0.5")

    def eval_line(self, metrics: dict[str, float]) -> str:
        line = f"eval loss {metrics['loss']:.4f}"
        if "sim_auc" in metrics:
            line += (f", similarity: related {metrics['sim_related']:.3f}, unrelated "
                     f"{metrics['sim_unrelated']:.3f}, AUC {metrics['sim_auc']:.3f} "
                     f"({int(metrics['sim_pairs'])} pairs)")
        return line

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """Nearest neighbours of a few frequent tokens; the vectors saved (process 0)."""
        vectors_VxD = self._vectors(params)
        unit_VxD = cosine_matrix(vectors_VxD)
        pieces = self.data.tokenizer.pieces()
        probes = [w for w in PROBES if w in self._ids]
        if not probes:  # a corpus without them: its most frequent tokens
            probes = [pieces[i] for i in np.argsort(-np.where(self._usable, self._counts, -1))[:4]]
            probes = [w for w in probes if w in self._ids]
        allowed_V = self._usable.copy()
        log("nearest neighbours (cosine of the input vectors):")
        for word in probes[:6]:
            i = self._ids[word]
            sims_V = np.where(allowed_V, unit_VxD @ unit_VxD[i], -np.inf)
            sims_V[i] = -np.inf
            top = np.argsort(-sims_V)[:NEIGHBOURS]
            log(f"  {word}: " + ", ".join(f"{pieces[j]} {sims_V[j]:.2f}" for j in top))
        if jax.process_index() == 0:
            path = os.path.join(self.workdir, "embeddings.npy")
            tok = self.data.tokenizer
            if tok.kind == "word":  # the words that took part, by string
                keep = np.flatnonzero(self._usable)
                save_embeddings(path, vectors_VxD[keep], [pieces[i] for i in keep], None)
            else:  # every id of the tokenizer, in order
                save_embeddings(path, vectors_VxD, pieces, tok.fingerprint())
            log(f"embeddings: {path} ({'words' if tok.kind == 'word' else tok.name}, dim {vectors_VxD.shape[1]})")
