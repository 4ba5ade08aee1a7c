"""Sequence-to-sequence training (translation, summarisation) of encoder-decoder families, and of
decoder-only ones (GPT) as prompt -> completion fine-tuning.

Data: (source, target) pairs from llmjax.data.pairs (the embedded stdlib task: a function's code
to the first line of its docstring; `pairs:GLOB` tab-separated files; tfds translation datasets),
one tokenizer trained on both sides (a shared vocabulary; a random sample of the train pairs up to
data.spm_train_chars), tokenized once into a cache in the workdir that is memory-mapped
(llmjax.data.example_cache), packed Flax-wmt style with segment and position ids
(llmjax.data.packed_pairs, which gathers a batch's examples from the cache): memory does not
grow with the dataset, and the batch of a step is a pure function of (seed, step). Sources are data.seq_len tokens per row, targets task.target_len. Objective: teacher-forced
cross-entropy with label smoothing, normalised by the update's target-token count. Eval: loss,
perplexity and token accuracy over the packed eval split, then sacreBLEU BLEU and chrF, ROUGE-1/2/L
and the placeholder accuracy (llmjax.evaluation.text_scores) of beam-search decodes of the whole
eval split (or its first task.decode_examples sources) against their references, decoded
task.decode_batch_size at a time in order of length. Baselines (BASELINES) over the same
examples: copying the source, the translation memory (the target of the train pair whose source
is most similar by character n-grams: llmjax.data.retrieval.memory) and the most frequent train
target; the last two over the first retrieval.POOL train pairs when the train split is larger.
sacreBLEU's signatures are logged once with the baselines and stored in results.json. With
task.memory_fallback the reported output takes the memory's target where its similarity reaches
that threshold (the model's own scores beside, as model_*). With task.memory_input the model reads
the memory's target too: each source becomes source + [SEP] + the target of its closest train
pair where the similarity reaches that threshold (llmjax.data.memory_input), so that it edits a
close match instead of translating from nothing.

A family whose generation prompt is a prefix to continue (`prompt_is_source` False: GPT) reads
the same pairs as one sequence per example, source + [SEP] + target + EOS in rows of data.seq_len
tokens, its context as in pretraining (llmjax.data.packed_completions: the source keeps its first
data.seq_len - task.target_len - 1 tokens, the target task.target_len with EOS), with the loss on
the completion (target + EOS) only; it decodes by continuing source + [SEP] with the same beam
search, and is scored with the same metrics beside the same baselines.

Shape key: B batch, S source length (data.seq_len), T target length (task.target_len), L a
decoder-only row (data.seq_len), V padded vocabulary.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.config import ConfigError, check_fraction, check_positive, fail
from llmjax.data import example_cache, retrieval
from llmjax.data.gettext_catalogs import placeholders
from llmjax.data.memory_input import JoinedSources, matches_over
from llmjax.data.packed_completions import PackedCompletions
from llmjax.data.packed_completions import prompt_ids as completion_prompt
from llmjax.data.packed_pairs import PackedPairs, example_ids
from llmjax.data.pairs import (PairStream, check_pairs_spec, describe, files_key, open_pairs,
                               split_identifiers)
from llmjax.data.tokenizers import Tokenizer, has_tokenizer, train_or_load_tokenizer
from llmjax.evaluation.text_scores import signatures, text_scores
from llmjax.generation.beam import beam_search
from llmjax.generation.decode import generate
from llmjax.models import registry as models
from llmjax.tasks.base import Batch, Log, Task
from llmjax.tasks.registry import register
from llmjax.training.objectives import cross_entropy_sums
from llmjax.training.workdir import MODEL_JSON

_MODEL_KEYS = ("source_segment_ids", "source_positions", "target_segment_ids", "target_positions")
_EVERY = 1 << 62  # keep_text's count for all of a split's texts
_MIN_WIDTH = 8  # the narrowest decode batch (source tokens): shorter sources share its shape


@dataclasses.dataclass(frozen=True)
class Seq2SeqTaskConfig:
    name: str = "seq2seq"  # the task, looked up in llmjax.tasks.registry
    dataset: str = "stdlib_docstrings"  # gettext:LANG[:ROOT] (the machine's message catalogs, English->LANG) | stdlib_docstrings (embedded) | pairs:GLOB (source<TAB>target lines) | tfds:NAME[/CONFIG]
    source_key: str = ""  # tfds: the source feature ('' = the dataset's supervised keys, e.g. de of de-en)
    target_key: str = ""  # tfds: the target feature ('' = the supervised keys' second)
    train_split: str = "train"  # tfds split to train on
    eval_split: str = ""  # tfds split to evaluate on ('' = validation, else test); other specs: '' (= validation) or 'dev', the next data.val_fraction of the split's hash before eval (train then excludes both: tune on it, never on eval; llmjax.data.pairs)
    max_examples: int = 0  # cap on training pairs (0 = all)
    target_len: int = 32  # target tokens per row (sources take data.seq_len)
    label_smoothing: float = 0.1  # target mass spread uniformly over the vocabulary (the Transformer's 0.1)
    decode_examples: int = -1  # eval sources decoded at each eval for BLEU/chrF/ROUGE (-1 = the whole eval split, 0 = none)
    decode_batch_size: int = 128  # eval sources beam-searched at once (in order of length: little padding)
    memory_fallback: float = 0.0  # the translation memory's target replaces the decode where its similarity is at least this (0 = off; choose it on eval_split='dev')
    memory_input: float = 0.0  # the memory's target joined to the source after [SEP] where its similarity is at least this, for the model to edit (neural fuzzy repair, llmjax.data.memory_input; 0 = off); train pairs read another train pair's
    beam_size: int = 4  # beam width of those decodes (1 = greedy)
    alpha: float = 0.6  # length penalty ((5 + len) / 6) ** alpha of beam search
    length_reward: float = 0.0  # beam score bonus per token (Murray & Chiang 2018; set on a dev split: experiments/encdec_dev_decoding.py)
    show_examples: int = 3  # decoded examples printed beside their references at the end
    split_identifiers: bool = False  # snake_case names in sources as words joined by " _ " (pairs.split_identifiers)
    decoder_input_dropout: float = 0.0  # teacher-forced decoder inputs replaced by [UNK] in training (word dropout)
    no_repeat_ngram: int = 0  # beam search never repeats an n-gram of this many tokens (0 = off)

    def validate(self) -> None:
        check_pairs_spec(self.dataset)
        for key in ("max_examples", "show_examples", "alpha", "no_repeat_ngram"):
            check_positive(f"task.{key}", getattr(self, key), allow_zero=True)
        if self.decode_examples < -1:
            fail("task.decode_examples", self.decode_examples,
                 "must be -1 (the whole eval split), 0 (none) or the number of eval sources to decode")
        for key in ("target_len", "beam_size", "decode_batch_size"):
            check_positive(f"task.{key}", getattr(self, key))
        check_fraction("task.label_smoothing", self.label_smoothing)
        check_fraction("task.memory_fallback", self.memory_fallback)
        check_fraction("task.memory_input", self.memory_input)
        check_fraction("task.decoder_input_dropout", self.decoder_input_dropout)
        for key in ("length_reward", "no_repeat_ngram"):
            if self.beam_size == 1 and getattr(self, key):
                raise ConfigError(f"config.task.{key}={getattr(self, key)} is a beam search option, but "
                                  "task.beam_size=1 decodes greedily: raise beam_size or set it to 0")


def as_source(cfg: Seq2SeqTaskConfig) -> Callable[[str], str]:
    """How the task reads a source text before tokenizing it (identifiers split, or as it is)."""
    return split_identifiers if cfg.split_identifiers else (lambda text: text)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def decode_texts(model: nn.Module, params: Any, sources: Sequence[Sequence[int]], tokenizer: Tokenizer,
                 cfg: Seq2SeqTaskConfig, batch_size: int) -> list[str]:
    """Beam search (greedy at beam 1) of each source with cfg's decoding settings, as text cut at
    EOS, in the sources' order; the eval's decodes, and experiments/encdec_dev_decoding.py's.

    Sources are decoded batch_size at a time in order of length, so that a batch pads little,
    each batch left-padded to a power-of-two width (at most the longest source): a whole eval
    split compiles a handful of shapes, once per run."""
    lengths_N = np.fromiter(map(len, sources), np.int64, len(sources))
    order_N = np.argsort(lengths_N, kind="stable")
    longest = int(lengths_N.max(initial=0))
    out = [""] * len(sources)
    for start in range(0, len(sources), batch_size):
        idx = order_N[start:start + batch_size]
        chunk = [sources[i] for i in idx.tolist()]
        width = min(max(_MIN_WIDTH, 1 << (int(lengths_N[idx].max()) - 1).bit_length()), longest)
        if cfg.beam_size > 1:
            ids = beam_search(model, params, chunk, beam_size=cfg.beam_size, alpha=cfg.alpha,
                              max_new_tokens=cfg.target_len, eos_id=tokenizer.eos_id, pad_to=width,
                              no_repeat_ngram=cfg.no_repeat_ngram, length_reward=cfg.length_reward)[0][:, 0]
        else:
            ids = generate(model, params, chunk, max_new_tokens=cfg.target_len, rng=jax.random.key(0),
                           temperature=0.0, eos_id=tokenizer.eos_id, pad_to=width)
        for i, row in zip(idx.tolist(), np.asarray(ids).tolist()):
            cut = row.index(tokenizer.eos_id) if tokenizer.eos_id in row else len(row)
            out[i] = tokenizer.decode(row[:cut]).strip()
    return out


def training_sums(model: nn.Module, params: Any, batch: Batch, rng: jax.Array, *, label_smoothing: float,
                  num_classes: int, z_loss: float = 0.0) -> dict[str, jax.Array]:
    """The trained loss of a batch (teacher forcing, dropout on): cross_entropy_sums' sums. With
    copy attention, label smoothing's uniform term goes on the generation distribution only
    (models/copy_head.py says why)."""
    copy = bool(getattr(model.cfg, "copy_attention", False)) and bool(label_smoothing)
    out = model.apply({"params": params}, batch["source"], batch["decoder_inputs"], deterministic=False,
                      rngs={"dropout": rng}, **{k: batch[k] for k in _MODEL_KEYS},
                      **({"generation_logits": True} if copy else {}))
    logits_BxTxV, generation_BxTxV = out if copy else (out, None)
    return cross_entropy_sums(logits_BxTxV, batch["targets"], batch["weights"], z_loss,
                              label_smoothing=label_smoothing, num_classes=num_classes,
                              smoothing_logits_BxLxV=generation_BxTxV)


BASELINES = {"copy": "the source itself",
             "memory": "the translation memory (the target of the train source most similar by character n-grams)",
             "frequent": "the most frequent train target"}


def baseline_scores(sources: list[str], references: list[str], train_sources: list[str],
                    train_targets: list[str], memory_targets: list[str] | None = None) -> dict[str, float]:
    """text_scores of each of BASELINES, keys prefixed by its name (copy_bleu, memory_chrf, ...):
    each source copied, the translation memory's proposal (retrieval.memory over the given train
    pairs; memory_targets when already known) and always the most frequent train target. The task
    passes the first retrieval.POOL train pairs (all of a smaller train split)."""
    common = collections.Counter(train_targets).most_common(1)
    if memory_targets is None:
        memory_targets = retrieval.memory(train_sources, train_targets, sources)[0]
    guesses = {"copy": list(sources), "memory": memory_targets,
               "frequent": [common[0][0] if common else ""] * len(references)}
    return {f"{name}_{k}": v for name in BASELINES
            for k, v in text_scores(guesses[name], references, placeholders).items()}


@register("seq2seq", Seq2SeqTaskConfig)
class Seq2SeqTask(Task):
    tokenizer: Tokenizer

    def __init__(self, run: Any):
        super().__init__(run)
        cfg, max_len = run.task, run.model.max_len
        if getattr(run.model, "prompt_is_source", None) is None:
            raise ConfigError(f"config.model.name={run.model.name!r} does not generate (no prompt_is_source, "
                              "prefill, extend): the seq2seq task decodes; pick a family that generates")
        if self._decoder_only and run.data.seq_len - cfg.target_len < 2:
            raise ConfigError(f"config.task.target_len={cfg.target_len} leaves no room for a source in "
                              f"config.data.seq_len={run.data.seq_len} (a decoder-only row holds source + [SEP] "
                              "+ target): raise seq_len or lower target_len")
        if max_len and cfg.target_len > max_len:
            raise ConfigError(f"config.task.target_len={cfg.target_len} exceeds config.model.max_len={max_len} "
                              "(the positional table): raise max_len or lower target_len")

    def prepare(self, workdir: str, log: Log, resuming: bool) -> None:
        cfg, d, t = self.run.task, self.run.data, self.run.train
        stream = open_pairs(cfg.dataset, tfds_data_dir=d.tfds_data_dir, source_key=cfg.source_key,
                            target_key=cfg.target_key, train_split=cfg.train_split,
                            eval_split=cfg.eval_split, val_fraction=d.val_fraction,
                            max_examples=cfg.max_examples, log=log)
        read = as_source(cfg)
        tok_dir = os.path.join(workdir, "tokenizer")
        sample = (_tokenizer_sample(stream, read, d.spm_train_chars)
                  if not has_tokenizer(tok_dir) and d.tokenizer in ("sentencepiece", "char") else [])
        self.tokenizer = tok = train_or_load_tokenizer(d, sample, tok_dir, log)
        key = {"task": "seq2seq", "dataset": cfg.dataset, "tfds_data_dir": d.tfds_data_dir,
               "source_key": cfg.source_key, "target_key": cfg.target_key,
               "train_split": cfg.train_split, "eval_split": cfg.eval_split,
               "val_fraction": d.val_fraction, "max_examples": cfg.max_examples,
               "split_identifiers": cfg.split_identifiers, "files": files_key(cfg.dataset)}
        self._cache = cache = example_cache.load_or_build(
            os.path.join(workdir, "data", "examples"), key, tok,
            lambda: ((split, pair, None) for split, *pair in stream), log,
            fields=("source", "target"), labelled=False, meta=lambda: {"stats": stream.stats},
            keep_text={"train": retrieval.POOL, "eval": _EVERY},
            transforms={"source": read})
        log(f"data {cfg.dataset}: {describe(cache.meta['stats'])}")
        pack = (functools.partial(PackedCompletions, seq_len=d.seq_len, sep_id=tok.sep_id) if self._decoder_only
                else functools.partial(PackedPairs, source_len=d.seq_len, start_id=tok.eos_id))
        pack = functools.partial(pack, target_len=cfg.target_len, seed=t.seed, eos_id=tok.eos_id, pad_id=tok.pad_id)
        train_sources, eval_sources = cache.field("train", "source"), cache.field("eval", "source")
        want = len(eval_sources) if cfg.decode_examples < 0 else cfg.decode_examples
        self._sources = cache.texts("eval", "source", want)  # as the dataset gives them
        if cfg.memory_input:
            train_sources, eval_sources = self._join_memory(train_sources, eval_sources, log)
        self._train = pack(train_sources, cache.field("train", "target"), batch_size=t.batch_size, shuffle=True)
        self._eval = pack(eval_sources, cache.field("eval", "target"),
                          batch_size=self.eval_batch_size, shuffle=False)
        self._references = cache.texts("eval", "target", want)
        n = len(self._sources)  # at most the texts the cache kept
        # Decoded sources are what training sees (source_prompt).
        self._decode_sources = [source_prompt(eval_sources[i], tok, d.seq_len, cfg.target_len, self._decoder_only)
                                for i in range(n)]
        self._decoded: list[str] = []
        which = "the whole eval split" if n == len(eval_sources) else f"the first {n:,} eval sources"
        decoded = (f"{which} decoded at each eval (beam {cfg.beam_size}, {cfg.decode_batch_size} sources at a time)"
                   if n else "none decoded" + (" (task.decode_examples=0)" if not cfg.decode_examples else ""))
        log(f"data: {self._train.num_examples:,} train pairs in {self._train.num_rows:,} packed rows, "
            f"{self._eval.num_examples:,} eval pairs in {self._eval.num_rows:,}; {decoded}")

    def _join_memory(self, train_sources: example_cache.Ragged, eval_sources: example_cache.Ragged,
                     log: Log) -> tuple[JoinedSources, JoinedSources]:
        """Both splits' sources with the memory's target joined where its similarity reaches
        task.memory_input: train pairs matched to another of the first retrieval.POOL train pairs
        (those past the pool read their source alone), eval pairs to those train pairs."""
        threshold, sep, memory = self.run.task.memory_input, self.tokenizer.sep_id, self._cache.field("train", "target")
        train_index, train_sim = self._memory_index.matches()
        eval_index, eval_sim = self._eval_matches
        train_N = matches_over(train_index, train_sim, threshold, len(train_sources))
        eval_N = matches_over(eval_index, eval_sim, threshold, len(eval_sources))
        log(f"data: the memory's target joined to {np.mean(train_N >= 0):.1%} of train sources and "
            f"{np.mean(eval_N >= 0):.1%} of eval sources (similarity >= {threshold})")
        return JoinedSources(train_sources, memory, train_N, sep), JoinedSources(eval_sources, memory, eval_N, sep)

    @property
    def _decoder_only(self) -> bool:
        """The family continues a prompt (GPT): it reads prompt -> completion rows."""
        return not self.run.model.prompt_is_source

    @staticmethod
    def prompt_ids(task: Seq2SeqTaskConfig, data: Any, tokenizer: Any, texts: Sequence[str],
                   workdir: str) -> list[list[int]]:
        """Sources as training and the eval's decodes read them: identifiers split as the run
        split them, with task.memory_input the target of the closest of the run's train pairs
        joined as in training (its example cache in workdir is the memory), then as the run's
        family reads a source (source_prompt; the family from workdir's model.json)."""
        ids = tokenizer.encode_batch([as_source(task)(text) for text in texts])
        if task.memory_input and texts:
            index, targets = _saved_memory(workdir)
            best_N, sim_N = index.matches(texts)
            match_N = matches_over(best_N, sim_N, task.memory_input, len(texts))
            joined = JoinedSources(example_cache.Ragged.from_arrays(ids), targets, match_N, tokenizer.sep_id)
            ids = [joined[i] for i in range(len(joined))]
        decoder_only = _continues_prompts(workdir)
        return [source_prompt(x, tokenizer, data.seq_len, task.target_len, decoder_only).tolist() for x in ids]

    @staticmethod
    def decoding(task: Seq2SeqTaskConfig) -> dict[str, Any]:
        """The eval's decoding: beam search with the run's settings (greedy at beam 1)."""
        if task.beam_size <= 1:
            return {"method": "greedy", "max_new_tokens": task.target_len}
        return {"method": "beam", "beam_size": task.beam_size, "alpha": task.alpha,
                "no_repeat_ngram": task.no_repeat_ngram, "length_reward": task.length_reward,
                "max_new_tokens": task.target_len}

    def model_config(self, platform: str) -> Any:
        cfg = self.finalized_model(self.tokenizer.vocab_size, platform)
        if self._decoder_only:  # rows of data.seq_len: its context, as in pretraining
            return cfg
        max_len = self.run.model.max_len or max(self.run.data.seq_len, self.run.task.target_len)
        return dataclasses.replace(cfg, max_len=max_len, start_id=self.tokenizer.eos_id)

    def init_params(self, model: nn.Module, rng: jax.Array) -> Any:
        source = jnp.zeros((1, self.run.data.seq_len), jnp.int32)
        if self._decoder_only:
            return model.init(rng, source, deterministic=True)["params"]
        target = jnp.zeros((1, self.run.task.target_len), jnp.int32)
        return model.init(rng, source, target, deterministic=True)["params"]

    # ------------------------------------------------------------ batches

    def train_batch(self, step: int, rows: slice | None = None) -> Batch:
        return self._train.batch(step, rows)

    @property
    def num_eval_batches(self) -> int:
        return self.capped_eval_batches(self._eval.num_batches)

    def eval_batch(self, index: int, rows: slice | None = None) -> Batch:
        return self._eval.batch(index, rows)

    # ------------------------------------------------------------ objective

    def _logits(self, model, params, batch, deterministic: bool, rng=None) -> jax.Array:
        if self._decoder_only:  # the packed rows' positions and segments, as the family takes them
            return model.apply({"params": params}, batch["inputs"], deterministic=deterministic,
                               rngs=None if rng is None else {"dropout": rng},
                               **{k: batch[k] for k in self.run.model.inputs if k in batch})
        return model.apply({"params": params}, batch["source"], batch["decoder_inputs"],
                           deterministic=deterministic, rngs=None if rng is None else {"dropout": rng},
                           **{k: batch[k] for k in _MODEL_KEYS})

    def denominators(self, batch: Batch) -> dict[str, jax.Array]:
        return {"tokens": jnp.sum(batch["weights"].astype(jnp.float32))}

    def objective(self, model, params, batch, denoms, rng):
        if self.run.task.decoder_input_dropout:
            rng, word_rng = jax.random.split(rng)
            batch = (self._drop_completion_words if self._decoder_only else self._drop_words)(batch, word_rng)
        smoothing = {"label_smoothing": self.run.task.label_smoothing, "num_classes": self.tokenizer.vocab_size}
        if self._decoder_only:
            sums = cross_entropy_sums(self._logits(model, params, batch, False, rng), batch["targets"],
                                      batch["weights"], self.run.train.z_loss, **smoothing)
        else:
            sums = training_sums(model, params, batch, rng, z_loss=self.run.train.z_loss, **smoothing)
        return sums["loss_sum"], {"nll_sum": sums["nll_sum"], "loss_sum": sums["loss_sum"]}

    def _drop_words(self, batch: Batch, rng: jax.Array) -> Batch:
        """Teacher-forced decoder inputs replaced by [UNK] at rate decoder_input_dropout (never a
        start token: position 0 of each target, where padding also sits)."""
        inputs_BxT = batch["decoder_inputs"]
        drop_BxT = jax.random.bernoulli(rng, self.run.task.decoder_input_dropout, inputs_BxT.shape)
        drop_BxT &= batch["target_positions"] > 0
        return dict(batch, decoder_inputs=jnp.where(drop_BxT, self.tokenizer.unk_id, inputs_BxT))

    def _drop_completion_words(self, batch: Batch, rng: jax.Array) -> Batch:
        """A decoder-only row's target tokens among its inputs (those after [SEP]: the position
        before predicted a completion token of the same example) replaced by [UNK] at rate
        decoder_input_dropout, as _drop_words does to the decoder's."""
        inputs_BxL, segments_BxL = batch["inputs"], batch["segment_ids"]
        after_BxL = (batch["weights"][:, :-1] > 0) & (segments_BxL[:, 1:] == segments_BxL[:, :-1])
        drop_BxL = jax.random.bernoulli(rng, self.run.task.decoder_input_dropout, inputs_BxL.shape)
        drop_BxL &= jnp.pad(after_BxL, ((0, 0), (1, 0)))
        return dict(batch, inputs=jnp.where(drop_BxL, self.tokenizer.unk_id, inputs_BxL))

    def train_metrics(self, sums, denoms):
        count = jnp.maximum(denoms["tokens"], 1.0)
        return {"loss": sums["nll_sum"] / count, "smoothed_loss": sums["loss_sum"] / count,
                "tokens": denoms["tokens"]}

    def eval_sums(self, model, params, batch):
        logits_BxTxV = self._logits(model, params, batch, deterministic=True)
        sums = cross_entropy_sums(logits_BxTxV, batch["targets"], batch["weights"])
        hits_BxT = (jnp.argmax(logits_BxTxV, axis=-1) == batch["targets"]).astype(jnp.float32)
        return {"nll_sum": sums["nll_sum"], "weight_sum": sums["weight_sum"],
                "hits": jnp.sum(hits_BxT * batch["weights"])}

    def eval_metrics(self, totals: dict[str, Any]) -> dict[str, float]:
        n = max(float(totals["weight_sum"]), 1.0)
        loss = float(totals["nll_sum"]) / n
        return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
                "token_accuracy": float(totals["hits"]) / n, "tokens": float(totals["weight_sum"])}

    # ------------------------------------------------------------ decoding

    def decode(self, model: nn.Module, params: Any, sources: list[np.ndarray]) -> list[str]:
        return decode_texts(model, params, sources, self.tokenizer, self.run.task, self.run.task.decode_batch_size)

    def decoded_metrics(self, model: nn.Module, params: Any) -> dict[str, float]:
        if not self._decode_sources:
            return {}
        self._decoded = self.decode(model, params, self._decode_sources)
        scores = text_scores(self._decoded, self._references, placeholders)
        threshold = self.run.task.memory_fallback
        if not threshold:
            return scores
        # Fallback on a close match, as a CAT tool's fuzzy-match threshold does: the reported
        # output is the memory's target where its source is similar enough, else the decode.
        targets, similarity = self.eval_memory
        use = similarity >= threshold
        output = [t if u else d for d, t, u in zip(self._decoded, targets, use.tolist())]
        return {**text_scores(output, self._references, placeholders),
                **{f"model_{k}": v for k, v in scores.items()}, "memory_share": float(np.mean(use))}

    # ------------------------------------------------------------ accounting and reporting

    def flops_per_step(self, model_cfg: Any) -> float:
        if self._decoder_only:
            return model_cfg.flops_per_token(self.run.data.seq_len) * self.tokens_per_step()
        return self.batch_size * model_cfg.flops_per_row(self.run.data.seq_len, self.run.task.target_len)

    def tokens_per_step(self) -> int:
        """Source and target positions of every row (a decoder-only row holds both)."""
        if self._decoder_only:
            return self.batch_size * self.run.data.seq_len
        return self.batch_size * (self.run.data.seq_len + self.run.task.target_len)

    @functools.cached_property
    def _train_texts(self) -> tuple[list[str], list[str]]:
        """The first retrieval.POOL train pairs' sources and targets (all of a smaller train split),
        read from the cache once for the memory and the baselines."""
        sources, targets = (self._cache.texts("train", f, retrieval.POOL) for f in ("source", "target"))
        return sources, targets

    @functools.cached_property
    def eval_memory(self) -> tuple[list[str], np.ndarray]:
        """The translation memory's proposal for each decoded eval source, in their order (that of
        the decodes and references): (the target of the most similar train source by character
        n-grams among the first retrieval.POOL train pairs, '' where none shares one; that cosine
        similarity float32 (N,) in [0, 1]). The memory baseline's output, and what a model that
        falls back on close matches reads."""
        index_N, similarity_N = self._eval_matches
        targets = self._train_texts[1]
        n = len(self._sources)
        return [targets[i] if i >= 0 else "" for i in index_N[:n].tolist()], similarity_N[:n]

    @functools.cached_property
    def _eval_matches(self) -> tuple[np.ndarray, np.ndarray]:
        """The memory's matches of every eval source (the cache keeps all their texts) among
        the first retrieval.POOL train sources: the memory baseline's, the fallback's and the
        memory input's one search."""
        return self._memory_index.matches(self._cache.texts("eval", "source", _EVERY))

    @functools.cached_property
    def _memory_index(self) -> retrieval.MemoryIndex:
        """The translation memory over the first retrieval.POOL train pairs, fitted once."""
        return retrieval.MemoryIndex(self._train_texts[0])

    @functools.cached_property
    def _baselines(self) -> dict[str, float]:
        """BASELINES' scores over the decoded examples (none without decodes)."""
        if not self._references:
            return {}
        return baseline_scores(self._sources, self._references, *self._train_texts,
                               memory_targets=self.eval_memory[0])

    def describe(self, log: Log) -> None:
        b = self._baselines
        if not b:
            log(f"eval: {self.num_eval_batches} batches of {self.eval_batch_size} packed rows; no decodes, "
                "no baselines")
            return
        pool = (f" (memory and frequent from the first {retrieval.POOL:,} train pairs)"
                if self._train.num_examples > retrieval.POOL else "")
        log(f"eval: {self.num_eval_batches} batches of {self.eval_batch_size} packed rows; baselines over the "
            f"{len(self._references):,} decoded examples{pool}: " + "; ".join(
                f"{name}, {what}: {_scores_text(b, name + '_')}" for name, what in BASELINES.items()))
        log("sacreBLEU signatures: " + ", ".join(f"{k.split('_')[0]} {v}" for k, v in signatures().items()))

    def baselines(self) -> dict[str, Any]:
        """BASELINES' scores and sacreBLEU's signatures of bleu and chrf (none without decodes)."""
        return {**self._baselines, **signatures()} if self._baselines else {}

    def eval_line(self, m: dict[str, float]) -> str:
        line = f"eval loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}, token accuracy {m['token_accuracy']:.4f}"
        if "bleu" in m:
            b = self._baselines
            line += (f", {_scores_text(m)} (baselines BLEU/chrF: "
                     + ", ".join(f"{name} {b[name + '_bleu']:.2f}/{b[name + '_chrf']:.2f}" for name in BASELINES)
                     + ")")
        if "memory_share" in m:
            line += (f"; the memory's target for {m['memory_share']:.1%} of sources, the model alone: "
                     f"BLEU {m['model_bleu']:.2f}, chrF {m['model_chrf']:.2f}")
        return line

    def after_training(self, model: nn.Module, params: Any, log: Log) -> None:
        """A few decoded eval examples beside their references."""
        k = min(self.run.task.show_examples, len(self._references))
        if not k:
            return
        decoded = self._decoded[:k] or self.decode(model, params, self._decode_sources[:k])
        log(f"decoded eval examples (beam {self.run.task.beam_size}):")
        for source, hyp, ref in zip(self._sources, decoded, self._references):
            log(f"--- source: {_first_line(source)[:100]}\n    decoded:   {hyp}\n    reference: {ref}")


def _scores_text(m: dict[str, Any], prefix: str = "") -> str:
    """BLEU, chrF, ROUGE-1/2/L and the placeholder accuracy (where references have placeholders)
    of text_scores' keys under prefix, as words."""
    text = (f"BLEU {m[prefix + 'bleu']:.2f}, chrF {m[prefix + 'chrf']:.2f}, ROUGE-1/2/L {m[prefix + 'rouge1']:.2f}/"
            f"{m[prefix + 'rouge2']:.2f}/{m[prefix + 'rougeL']:.2f}")
    if m.get(prefix + "placeholder_examples"):
        text += (f", placeholders right in {m[prefix + 'placeholder_accuracy']:.1f}% of "
                 f"{m[prefix + 'placeholder_examples']:,}")
    return text


def source_prompt(ids: np.ndarray, tokenizer: Tokenizer, seq_len: int, target_len: int,
                  decoder_only: bool) -> np.ndarray:
    """A source's ids as the model reads them to decode its target: for an encoder-decoder
    ids + EOS cut to seq_len (packed_pairs.example_ids), for a decoder-only family the prompt of
    its rows, ids cut to seq_len - target_len - 1 then [SEP] (packed_completions.prompt_ids)."""
    if decoder_only:
        return completion_prompt(ids, tokenizer.sep_id, seq_len - target_len)
    return example_ids(ids, tokenizer.eos_id, seq_len)


def _continues_prompts(workdir: str) -> bool:
    """Whether the run in workdir trained a family that continues a prompt (GPT), from its
    model.json; a workdir without one (prepared, never trained) reads as the encoder-decoder's."""
    path = os.path.join(workdir, MODEL_JSON)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            return not models.config_from_dict(json.load(f)).prompt_is_source
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} cannot be read ({str(e).splitlines()[0]}): retrain, or fix the file") from None


@functools.lru_cache(maxsize=2)
def _saved_memory(workdir: str) -> tuple[retrieval.MemoryIndex, example_cache.Ragged]:
    """A finished run's translation memory (its first retrieval.POOL train pairs) from the example
    cache in its workdir: the index of the sources and the target ids, as its training read them."""
    directory = os.path.join(workdir, "data", "examples")
    manifest = example_cache.read_manifest(directory)
    if manifest is None:
        raise ConfigError(f"{directory} holds no finished example cache, and the run joins the translation "
                          "memory to its sources (task.memory_input): resume the run once to build it again")
    cache = example_cache.ExampleCache(directory, manifest, verify=False)
    return retrieval.MemoryIndex(cache.texts("train", "source", retrieval.POOL)), cache.field("train", "target")


def _tokenizer_sample(stream: PairStream, read: Callable[[str], str], budget: int) -> list[str]:
    """A random sample of the train pairs' sources (as the task reads them) and targets, up to
    budget characters; when all fit, every source then every target, as before the sample."""
    def train_texts():
        for i, (split, source, target) in enumerate(stream):
            if split != "train":
                return
            yield i, read(source)
            yield 1 << 39 | i, target
    return example_cache.tokenizer_sample(train_texts(), budget)
