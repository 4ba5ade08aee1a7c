"""The seam between the one training loop and what is trained: a Task.

A task owns
  data        batches as a pure function of (seed, step) (so resume is exact on any mesh), and
              its evaluation batches;
  objective   loss and metric *sums*, with denominators computed from the whole batch, so
              gradient accumulation, data parallelism and evaluation reduce to exact weighted
              means whatever the micro-batch split;
  metrics     what a train row and an eval row report (eval may decode on the host);
  accounting  FLOPs and tokens per step, baselines printed at the start.
The loop (state, step, checkpoints, metrics, progress, faults) calls only this interface and
never names a model family or a task.

Batches are dicts of numpy arrays with the global batch on axis 0.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np

from llmjax.data.embeddings_file import check_token_vectors, load_embeddings
from llmjax.data.tokenizers import load_tokenizer

Batch = dict[str, Any]
Log = Callable[[str], None]


class Task(abc.ABC):
    """One kind of training (LM pretraining, MLM+NSP, classification, seq2seq, ...)."""

    def __init__(self, run: Any):
        self.run = run  # llmjax.experiment.RunConfig

    # ------------------------------------------------------------ prompts (llmjax.sample)

    @staticmethod
    def prompt_ids(task: Any, data: Any, tokenizer: Any, texts: Sequence[str], workdir: str) -> list[list[int]]:
        """Prompts' ids as this task's inputs read the same texts in training (task and data are
        the run's resolved config groups, workdir its directory); most tasks take the tokens as
        they are."""
        return [list(tokenizer.encode(text)) for text in texts]

    @staticmethod
    def decoding(task: Any) -> dict[str, Any]:
        """The run's own decoding settings, named as llmjax.sample's flags: its defaults for the
        flags not given (none by default: a language model samples)."""
        return {}

    # ------------------------------------------------------------ data (host)

    @abc.abstractmethod
    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        """Read, tokenize and cache the data (process 0 first, then the others reuse it)."""

    @abc.abstractmethod
    def model_config(self, platform: str) -> Any:
        """The finalized model config (vocabulary and lengths known once the data is prepared)."""

    @abc.abstractmethod
    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        """The model's (logically boxed) parameters, from an example input of the task's shapes."""

    @abc.abstractmethod
    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        """The global batch of an update (or its `rows`): a pure function of (seed, step)."""

    @property
    @abc.abstractmethod
    def num_eval_batches(self) -> int:
        """Batches in one evaluation."""

    def capped_eval_batches(self, num_batches: int) -> int:
        """train.eval_steps batches from the start of an eval split of num_batches, or all (0)."""
        return min(self.run.train.eval_steps or num_batches, num_batches)

    @abc.abstractmethod
    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        """Evaluation batch `index`; padding rows carry zero weight."""

    @property
    def batch_size(self) -> int:
        """Rows of a train batch (all hosts together)."""
        return self.run.train.batch_size

    @property
    def eval_batch_size(self) -> int:
        """Rows of an eval batch (all hosts together): one micro-batch, what fits in memory."""
        return self.run.train.batch_size // self.run.train.grad_accum_steps

    def finalized_model(self, vocab_size: int, platform: str) -> Any:
        """run.model finalized for the tokenizer's vocabulary, rows of data.seq_len, the platform
        and the compute dtype (what model_config returns, before any task-specific change)."""
        return self.run.model.finalize(vocab_size=vocab_size, max_len=self.run.data.seq_len,
                                       platform=platform, dtype=self.run.train.dtype)

    # ------------------------------------------------------------ objective (device, jitted)

    @abc.abstractmethod
    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        """Normalisers that depend on the data only (token counts, example counts), summed over
        the whole update batch. `loss_denominator` names the one the gradient is divided by."""

    loss_denominator: str = "tokens"

    @abc.abstractmethod
    def objective(self, model: nn.Module, params: Any, batch: Batch, denoms: dict[str, jax.Array],
                  rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(loss sum, metric sums) of a (micro-)batch in training mode. The gradient of the loss
        sum, summed over micro-batches and divided by denoms[loss_denominator], is the update's."""

    @abc.abstractmethod
    def train_metrics(self, sums: dict[str, jax.Array], denoms: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """A train row's metrics (at least "loss") from the summed metric sums."""

    @abc.abstractmethod
    def eval_sums(self, model: nn.Module, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Sums of one eval batch in inference mode; added over batches on the host."""

    @abc.abstractmethod
    def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """An eval row's metrics (at least "loss") from the totals of eval_sums."""

    def decoded_metrics(self, model: nn.Module, params: Any) -> dict[str, float]:
        """Eval metrics that need decoding on the host (BLEU, ROUGE), added to the eval row.
        Runs on every process (parameters may be sharded)."""
        return {}

    def eval_details(self, totals: dict[str, Any]) -> dict[str, Any]:
        """Eval results too long for a metrics row (per-position loss), name -> JSON-able value;
        the loop writes each to workdir/eval/<name>.json with the step."""
        return {}

    # ------------------------------------------------------------ accounting and reporting

    @abc.abstractmethod
    def flops_per_step(self, model_cfg: Any) -> float:
        """Training FLOPs of one update (forward + backward)."""

    def tokens_per_step(self) -> int:
        """Tokens one update trains on (for tokens/s): every position of every row."""
        return self.run.train.batch_size * self.run.data.seq_len

    def describe(self, log: Log) -> None:
        """Print the task's baselines (the numbers a model must beat)."""

    def baselines(self) -> dict[str, float]:
        """Baseline figures returned with the final metrics."""
        return {}

    def eval_line(self, metrics: dict[str, float]) -> str:
        """The eval row as one log line."""
        return "eval " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """Whatever the task shows at the end (samples, decoded examples)."""

    def token_vectors(self, model_cfg: Any, workdir: str) -> np.ndarray:
        """The rows (V, d_model) of model_cfg.embed_init, a Word2Vec file over this run's
        tokenizer (workdir/tokenizer, saved by prepare); a one-line ConfigError when they do not
        fit (llmjax.training.embed_init puts them in place)."""
        tok = load_tokenizer(os.path.join(workdir, "tokenizer"))
        check_token_vectors(model_cfg.embed_init, "config.model.embed_init", model_cfg.d_model,
                            tok.fingerprint(), tok.vocab_size)
        return load_embeddings(model_cfg.embed_init)[0]
