"""Word2Vec (Mikolov et al. 2013): skip-gram or CBOW with negative sampling, two tables.

The input table ("input"/"embedding", the vectors one keeps) is initialised uniform in
[-0.5/D, 0.5/D) and the output table ("output"/"embedding") at zero, as word2vec.c and gensim do.
A row of a batch scores 1 + k output vectors against one input vector: the true token first,
then its k negatives. The input vector is the center token's (skip-gram) or the mean of the
context tokens' (CBOW, gensim's cbow_mean=1). With negative_group G > 1 (not gensim's
estimator, off by default) each G consecutive rows share one draw of k negatives, which one small
matmul per group scores: the rows' losses keep their form, the negatives are correlated across the
group. Sampling the pairs, the negatives and the subsampling of frequent tokens is the task's
(llmjax.tasks.word2vec); the loss is llmjax.tasks.word2vec.negative_sampling_loss.

Shape key: B rows (pairs or centers), C input slots (1 skip-gram, 2 * window CBOW), K 1 + k
candidates (the true token, then k negatives), N k negatives, G rows of a negative group, M groups
(B / G), D dim, V padded vocabulary, L looked-up rows.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.config import RUNTIME, DataConfig, check_choice, check_positive, fail
from llmjax.models.heads import mean_real
from llmjax.models.registry import register
from llmjax.models.token_model import pad_vocab

ARCHITECTURES = ("skipgram", "cbow")


@dataclasses.dataclass(frozen=True)
class Word2VecConfig:
    """config.model for name="word2vec"."""
    tasks: ClassVar[tuple[str, ...]] = ("word2vec",)
    inputs: ClassVar[tuple[str, ...]] = ()  # no optional batch inputs
    heads: ClassVar[tuple[str, ...]] = ()  # no task heads: the vectors are the product
    name: str = "word2vec"  # model family, looked up in llmjax.models.registry
    architecture: str = "skipgram"  # skipgram (center -> each context token) | cbow (mean of the context -> center)
    dim: int = 100  # vector width D of both tables
    window: int = 5  # largest distance between center and context (each center draws its own 1..window)
    negatives: int = 5  # k noise tokens per true one, drawn from the unigram^0.75 distribution
    vocab_multiple: int = 8  # pad the vocabulary to a multiple of this (padded rows are never drawn)
    # Rows that share one draw of k negatives. 1: each row its own, gensim's estimator. G > 1 is
    # NOT gensim's estimator (a group's rows push against the same k noise tokens), but a group's
    # negatives are looked up once and scored by one (G, D) x (D, k) matmul: k lookups and
    # scatters per G rows instead of per row, the bulk of a CPU step (the batch is G-aligned).
    negative_group: int = 1
    vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)  # padded, from the tokenizer
    real_vocab_size: int = dataclasses.field(default=0, metadata=RUNTIME)  # the tokenizer's own ids
    dtype: str = dataclasses.field(default="float32", metadata=RUNTIME)  # compute dtype (train.dtype)

    @property
    def input_slots(self) -> int:
        """C: tokens feeding one input vector."""
        return 1 if self.architecture == "skipgram" else 2 * self.window

    def validate(self) -> None:
        check_choice("model.architecture", self.architecture, ARCHITECTURES)
        for key in ("dim", "window", "negatives", "vocab_multiple", "negative_group"):
            check_positive(f"model.{key}", getattr(self, key))

    def check_run(self, data: DataConfig, mesh_sizes: tuple[int, int, int] | None) -> None:
        """fsdp splits the vector width."""
        if mesh_sizes is not None and self.dim % mesh_sizes[1]:
            fail("mesh.fsdp", mesh_sizes[1], f"must divide config.model.dim={self.dim}")

    def finalize(self, vocab_size: int, max_len: int, platform: str, dtype: str) -> Word2VecConfig:
        """Vocabulary padded (the real size kept: the noise never draws padding). No lengths."""
        del max_len, platform
        return dataclasses.replace(self, vocab_size=pad_vocab(vocab_size, self.vocab_multiple),
                                   real_vocab_size=vocab_size, dtype=dtype)

    def summary(self) -> str:
        shared = f" shared by groups of {self.negative_group} rows" if self.negative_group > 1 else ""
        return (f"{self.architecture}, vocab {self.real_vocab_size}, dim {self.dim}, window "
                f"{self.window}, {self.negatives} negatives{shared}")

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per batch row (a pair, or a center for CBOW), forward + backward: 1 + k
        dot products of D (2 FLOPs per multiply-add, twice that backward), plus the CBOW mean."""
        del seq_len
        mean = 2 * self.input_slots * self.dim if self.architecture == "cbow" else 0
        return 6.0 * (1 + self.negatives) * self.dim + 3.0 * mean


@jax.custom_vjp
def take_rows(table_VxD: jax.Array, ids: jax.Array, counts: jax.Array | None = None) -> jax.Array:
    """table[ids], whose gradient moves each row by the *mean* of the gradients of its
    occurrences in the batch, not their sum. counts (ids' shape, float32; None: ones): the
    occurrences each lookup stands for, when its incoming gradient is already the sum of that
    many (a negative shared by a group of rows, looked up once). ids are in [0, V): the lookup
    clamps (XLA's own gather, no masking pass over the rows) where jnp.take would fill NaN.

    word2vec.c takes one small SGD step per example, so a frequent token's many occurrences
    each see the row the previous ones left. A batch computes them all at the same parameters:
    summed, a token drawn as a negative a thousand times in a batch takes a thousand steps in one
    direction at once, and every vector is driven onto the same direction (measured: cosine ~1
    between any two words). The mean gives a row one step per batch whatever its count: a token
    seen once moves as in word2vec.c, a frequent one is averaged (it has more batches to learn
    from).
    """
    return jnp.take(table_VxD, ids, axis=0, mode="clip")


def _take_rows_fwd(table_VxD, ids, counts):
    return jnp.take(table_VxD, ids, axis=0, mode="clip"), (ids, counts, table_VxD.shape[0])


def _take_rows_bwd(res, g):
    ids, counts, V = res
    flat = ids.reshape(-1)
    g_LxD = g.reshape(flat.shape[0], -1).astype(jnp.float32)
    sums_VxD = jnp.zeros((V, g_LxD.shape[1]), jnp.float32).at[flat].add(g_LxD)
    occurrences = 1.0 if counts is None else counts.reshape(-1).astype(jnp.float32)
    counts_V = jnp.zeros((V,), jnp.float32).at[flat].add(occurrences)
    return sums_VxD / jnp.maximum(counts_V, 1.0)[:, None], None, None


take_rows.defvjp(_take_rows_fwd, _take_rows_bwd)


class Table(nn.Module):
    """One (V, D) table; its leaf is named `embedding` like every lookup table."""

    vocab_size: int
    dim: int
    init: nn.initializers.Initializer

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("embedding", nn.with_logical_partitioning(self.init, (sh.VOCAB, sh.EMBED)),
                          (self.vocab_size, self.dim), jnp.float32)


def _uniform(scale: float) -> nn.initializers.Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)
    return init


class Word2Vec(nn.Module):
    """inputs (B, C) int32, input_mask (B, C) (1 = a real context slot; None: all) and
    candidates (B, K) int32 -> scores (B, K) float32: the dot of each candidate's output vector
    with the row's input vector (the center's, or the mean of the masked context). With
    negative_group G > 1, B is a multiple of G and each G consecutive rows have the same
    negatives (candidates[:, 1:]): only the group's first row's are read."""

    cfg: Word2VecConfig

    def setup(self):
        cfg = self.cfg
        self.input = Table(cfg.vocab_size, cfg.dim, _uniform(0.5 / cfg.dim))
        self.output = Table(cfg.vocab_size, cfg.dim, nn.initializers.zeros_init())

    def __call__(self, inputs_BxC: jax.Array, candidates_BxK: jax.Array,
                 input_mask_BxC: jax.Array | None = None) -> jax.Array:
        dtype = self.cfg.dtype
        x_BxCxD = take_rows(self.input(), inputs_BxC).astype(dtype)
        h_BxD = mean_real(x_BxCxD, input_mask_BxC)
        G = self.cfg.negative_group
        if G == 1:
            y_BxKxD = take_rows(self.output(), candidates_BxK).astype(dtype)
            return jnp.einsum("bd,bkd->bk", h_BxD, y_BxKxD).astype(jnp.float32)
        return self._grouped_scores(h_BxD, candidates_BxK, G).astype(jnp.float32)

    def _grouped_scores(self, h_BxD: jax.Array, candidates_BxK: jax.Array, G: int) -> jax.Array:
        """The true tokens row by row, each group's negatives once (one lookup standing for the
        G occurrences of the per-row path, so take_rows's means are the same)."""
        B, K = candidates_BxK.shape
        if B % G:
            raise ValueError(f"{B} rows do not split into groups of model.negative_group={G}")
        negatives_MxN = candidates_BxK[::G, 1:]
        ids_L = jnp.concatenate([candidates_BxK[:, 0], negatives_MxN.reshape(-1)])
        counts_L = jnp.concatenate([jnp.ones((B,), jnp.float32), jnp.full((negatives_MxN.size,), float(G))])
        y_LxD = take_rows(self.output(), ids_L, counts_L).astype(h_BxD.dtype)
        positive_B = jnp.einsum("bd,bd->b", h_BxD, y_LxD[:B])
        h_MxGxD = h_BxD.reshape(B // G, G, -1)
        negative_MxGxN = jnp.einsum("mgd,mnd->mgn", h_MxGxD, y_LxD[B:].reshape(B // G, K - 1, -1))
        return jnp.concatenate([positive_B[:, None], negative_MxGxN.reshape(B, K - 1)], axis=1)

    def vectors(self) -> jax.Array:
        """The input table (V, D): the word vectors."""
        return self.input()


@register("word2vec", Word2VecConfig)
def build_word2vec(cfg: Word2VecConfig) -> Word2Vec:
    return Word2Vec(cfg)
