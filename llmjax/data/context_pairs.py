"""Word2Vec's training examples from a token stream, as a pure function of (seed, step).

What word2vec.c and gensim do, in batches (Mikolov et al. 2013):
  - tokens seen fewer than min_count times in the train split, EOS and the specials never take part
    (gensim drops words under min_count from the sentences);
  - subsampling of frequent tokens: a token of train frequency f = count / total is kept with
    probability min(1, (sqrt(f / t) + 1) t / f) (word2vec.c's formula, gensim's too; t = sample,
    total = the counts of the tokens that take part), and the dropped ones are removed before
    windows are taken, so a window reaches past them;
  - dynamic window: each kept center draws its own reach b uniform in 1..window, and its context
    is the kept tokens within b of it in the same document (EOS ends a document, like a sentence);
  - negatives: k tokens per true one from the noise distribution p(w) ~ count(w)^0.75 (with
    group G > 1, not word2vec's: each G consecutive rows share one draw, llmjax.models.word2vec).

Step s reads chunk EpochOrder(seed)[s] of `chunk_tokens` consecutive stream tokens (shuffled per
epoch; the chunks of an eval split in order) and draws everything else from
default_rng([seed, s]): the batch of a step never depends on the steps before it. A chunk gives a
varying number of examples; the batch has a fixed number of rows (`capacity`, set from the rows of
the first train chunks with room to spare) padded with zero-weight rows, and the rare chunk that yields more
keeps a random `capacity` of them (the task reports how many its eval batches lose so).

Rows: skip-gram, one (center, context) pair; CBOW, one center with its 2 * window context slots
(input_mask marks the real ones). Batch: inputs (R, C) int32, targets (R,) int32 (the context
token, or the center), negatives (R, k) int32, weights (R,) float32 [, input_mask (R, C) float32].

Shape key: R rows, C input slots, V vocabulary, T chunk tokens, n kept tokens of a chunk.
"""
from __future__ import annotations

import math

import numpy as np

from llmjax.data.order import EpochOrder

NOISE_POWER = 0.75  # Mikolov et al. 2013: unigram^(3/4) beat unigram and uniform noise
PROBE_STEPS = 16  # train chunks whose rows size the batch
ROOM = 1.05  # capacity over the most rows a probed chunk gave


def usable(counts_V: np.ndarray, special_V: np.ndarray, min_count: int) -> np.ndarray:
    """bool (V,): the tokens that take part (seen min_count times in train, not special)."""
    return (np.asarray(counts_V) >= max(min_count, 1)) & ~np.asarray(special_V, bool)


def keep_probabilities(counts_V: np.ndarray, usable_V: np.ndarray, sample: float) -> np.ndarray:
    """float64 (V,): the probability that subsampling keeps one occurrence of each token
    (0 for the tokens that do not take part; 1 everywhere when sample is 0)."""
    counts = np.where(usable_V, np.asarray(counts_V, np.float64), 0.0)
    if sample <= 0:
        return usable_V.astype(np.float64)
    threshold = sample * counts.sum()  # t * total: f / t = count / threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(counts / threshold) + 1.0) * threshold / counts
    return np.where(usable_V, np.minimum(keep, 1.0), 0.0)


def noise_distribution(counts_V: np.ndarray, usable_V: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """float64 (V,): p(w) proportional to count(w)^power over the tokens that take part."""
    weights = np.where(usable_V, np.asarray(counts_V, np.float64), 0.0) ** power
    total = weights.sum()
    if total <= 0:
        raise ValueError("no token takes part in Word2Vec training (all are rarer than task.min_count "
                         "or special): lower config.task.min_count or use more data")
    return weights / total


class ContextPairs:
    """The batches of one split (see the module docstring)."""

    def __init__(self, tokens, chunk_tokens: int, capacity: int, keep_V: np.ndarray,
                 noise_V: np.ndarray, eos_id: int, window: int, negatives: int, skipgram: bool,
                 seed: int, shuffle: bool, max_chunks: int = 0, group: int = 1):
        if len(tokens) < 2:
            raise ValueError(f"the token stream has {len(tokens)} tokens: too few for Word2Vec")
        self.tokens, self.chunk_tokens, self.capacity = tokens, chunk_tokens, capacity
        self.keep_V, self.cdf_V = keep_V, np.cumsum(noise_V)
        self.cdf_V /= self.cdf_V[-1]
        self.eos_id, self.window, self.negatives, self.skipgram = eos_id, window, negatives, skipgram
        self.seed, self.group = seed, group
        chunks = math.ceil(len(tokens) / chunk_tokens)
        self.num_chunks = min(chunks, max_chunks) if max_chunks else chunks
        self._order = EpochOrder(self.num_chunks, 1, seed, shuffle)

    def chunk(self, step: int) -> np.ndarray:
        """int64 (T,) the stream tokens step reads (the last chunk of a split may be shorter)."""
        i = int(self._order.indices(step)[0])
        return np.asarray(self.tokens[i * self.chunk_tokens:(i + 1) * self.chunk_tokens], np.int64)

    def examples(self, step: int) -> tuple[dict[str, np.ndarray], np.random.Generator]:
        """All the rows step's chunk gives, before padding or the capacity (and the rng, to go on
        drawing from)."""
        rng = np.random.default_rng([self.seed, step])
        tokens_T = self.chunk(step)
        doc_T = np.cumsum(tokens_T == self.eos_id)
        kept = rng.random(len(tokens_T)) < self.keep_V[tokens_T]  # EOS and specials: keep 0
        words_n, doc_n = tokens_T[kept], doc_T[kept]
        reach_n = rng.integers(1, self.window + 1, size=len(words_n))
        if self.skipgram:
            inputs, targets = self._pairs(words_n, doc_n, reach_n)
            return {"inputs": inputs[:, None], "targets": targets}, rng
        inputs, mask, targets = self._contexts(words_n, doc_n, reach_n)
        return {"inputs": inputs, "input_mask": mask, "targets": targets}, rng

    def batch(self, step: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        out, rng = self.examples(step)
        found = len(out["targets"])
        pick = np.sort(rng.choice(found, self.capacity, replace=False)) if found > self.capacity else None
        R, G = self.capacity, self.group
        drawn = np.searchsorted(self.cdf_V, rng.random((-(-R // G), self.negatives)), side="right")
        negatives = drawn if G == 1 else np.repeat(drawn, G, axis=0)[:R]
        batch = {}
        for key, value in out.items():
            value = value[pick] if pick is not None else value
            padded = np.zeros((R, *value.shape[1:]), np.float32 if key == "input_mask" else np.int32)
            padded[:len(value)] = value
            batch[key] = padded
        batch["negatives"] = np.minimum(negatives, len(self.cdf_V) - 1).astype(np.int32)
        batch["weights"] = (np.arange(R) < min(found, R)).astype(np.float32)
        return batch if rows is None else {k: v[rows] for k, v in batch.items()}

    def _pairs(self, words_n, doc_n, reach_n) -> tuple[np.ndarray, np.ndarray]:
        """(centers, contexts): for each offset o, the pairs (i, i + o) and (i + o, i) whose
        center reaches o, in the same document."""
        centers, contexts = [], []
        for o in range(1, self.window + 1):
            same = doc_n[o:] == doc_n[:-o]
            left = np.flatnonzero(same & (reach_n[:-o] >= o))  # center i, context i + o
            right = np.flatnonzero(same & (reach_n[o:] >= o))  # center i + o, context i
            centers += [words_n[left], words_n[right + o]]
            contexts += [words_n[left + o], words_n[right]]
        return np.concatenate(centers), np.concatenate(contexts)

    def _contexts(self, words_n, doc_n, reach_n) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(contexts (n', 2W), their mask, centers (n',)) of the centers with any context."""
        n, W = len(words_n), self.window
        offsets_C = np.concatenate([np.arange(-W, 0), np.arange(1, W + 1)])
        at_nxC = np.arange(n)[:, None] + offsets_C
        inside = (at_nxC >= 0) & (at_nxC < n)
        at_nxC = np.clip(at_nxC, 0, max(n - 1, 0))
        mask = inside & (np.abs(offsets_C) <= reach_n[:, None]) & (doc_n[at_nxC] == doc_n[:, None])
        some = mask.any(axis=1)
        return (np.where(mask, words_n[at_nxC], 0)[some], mask[some].astype(np.float32),
                words_n[some])


def capacity(pairs: ContextPairs, multiple: int) -> int:
    """Rows a batch of these pairs needs: ROOM times the most that the first PROBE_STEPS chunks
    give, rounded up to a multiple (chunks differ: one of rare tokens keeps more of them)."""
    found = max(len(pairs.examples(step)[0]["targets"]) for step in range(min(PROBE_STEPS, pairs.num_chunks)))
    return max(multiple, math.ceil(ROOM * found / multiple) * multiple)
