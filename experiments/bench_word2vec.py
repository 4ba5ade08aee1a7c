"""gensim's Word2Vec and llmjax's (the word2vec task through the one training loop) on the same
corpus and settings: words/s of each on this machine, agreement of their nearest neighbours,
and the similarity check of llmjax.tasks.word2vec for both.

The corpus: the words of configs/word2vec_stdlib.py's data (the embedded stdlib's train split,
data.tokenizer="word"), prepared once by llmjax's data path in --workdir. gensim reads exactly
those words (the prepared train stream written out as one document a line, gensim's corpus_file
mode, its fastest: no Python per sentence, one thread a core), so both count the same words with
the same min_count and subsample them with the same formula. The vocabulary is the words of at
least --min_count occurrences (data.vocab_size is set to their number, so llmjax's tables hold no
row that never trains). Both use skip-gram or CBOW (--architecture), --dim, --window,
--negatives, --sample and --epochs; the learning rate decays linearly to 1e-4 of its peak in
both: gensim's SGD from its alpha 0.025, llmjax's optimizer from the config's (Adam at 0.1: plain
SGD does not survive batching, llmjax.tasks.word2vec).

words/s = the corpus's words x epochs / the training's wall time: gensim's train() call; llmjax's
whole train_and_evaluate with one eval at the end (compile and eval included), and its steady
rate (the median of the loop's tokens/s rows, compile and eval excluded, as corpus words)
beside it. Agreement: the mean overlap of the top-10 neighbours (cosine) of the 100 most
frequent words between the two models; a second gensim run with another seed gives the overlap
to expect between two runs of the same trainer.

  python experiments/bench_word2vec.py                                   # the whole stdlib, 5 epochs
  python experiments/bench_word2vec.py --max_train_chars=2000000 --epochs=1   # a quick check

Run it on an idle machine: both trainers use every core.
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from llmjax import experiment  # noqa: E402
from llmjax.data.embeddings_file import load_embeddings  # noqa: E402
from llmjax.evaluation.neighbours import neighbour_overlap  # noqa: E402
from llmjax.data.pipeline import prepare  # noqa: E402
from llmjax.tasks.word2vec import similarity_scores  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/word2vec_stdlib.py", "The llmjax side's config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/bench_word2vec", "Where the corpus and both runs go.")
_MAX_CHARS = flags.DEFINE_integer("max_train_chars", 0, "Train text read (0 = the whole corpus).")
_DATASET = flags.DEFINE_string("dataset", "stdlib", "data.dataset (the embedded stdlib by default).")
_ARCH = flags.DEFINE_enum("architecture", "skipgram", ["skipgram", "cbow"], "Word2Vec's model.")
_DIM = flags.DEFINE_integer("dim", 100, "Vector width.")
_WINDOW = flags.DEFINE_integer("window", 5, "Largest context distance.")
_NEGATIVES = flags.DEFINE_integer("negatives", 5, "Noise tokens per true one.")
_MIN_COUNT = flags.DEFINE_integer("min_count", 5, "Words seen fewer times take no part.")
_SAMPLE = flags.DEFINE_float("sample", 1e-4, "Subsampling threshold t.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Passes over the corpus.")
_BATCH = flags.DEFINE_integer("batch_tokens", 16384, "llmjax: corpus tokens per update (train.batch_size).")
_WORKERS = flags.DEFINE_integer("workers", 0, "gensim threads (0 = one a core).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of both trainers.")

GENSIM_ALPHA, MIN_LR_RATIO = 0.025, 1e-4
FREQUENT, TOP = 100, 10


def _config(vocab_size: int, steps: int):
    c = _CONFIG.value.copy_and_resolve_references()
    c.data.dataset = _DATASET.value
    c.data.max_train_chars = _MAX_CHARS.value
    c.data.vocab_size = vocab_size
    c.model.architecture, c.model.dim = _ARCH.value, _DIM.value
    c.model.window, c.model.negatives = _WINDOW.value, _NEGATIVES.value
    c.task.min_count, c.task.sample = _MIN_COUNT.value, _SAMPLE.value
    c.train.batch_size, c.train.num_steps, c.train.seed = _BATCH.value, steps, _SEED.value
    c.train.eval_every = c.checkpoint.every_steps = steps  # one eval and one save, at the end
    c.train.log_every = max(1, min(50, steps // 10))
    c.train.progress = False
    c.optim.min_lr_ratio = MIN_LR_RATIO
    return c


def _corpus(workdir: str) -> tuple[str, int, int, int]:
    """Prepare the words once (whole-split vocabulary), then size the vocabulary to the words of
    at least min_count occurrences and prepare again under it. Writes gensim's corpus file: one
    document a line. (corpus path, words in it, tokens of llmjax's train stream: the words, the rare
    ones as [UNK] and each document's EOS, vocabulary size)."""
    probe = experiment.resolve(_config(10_000_000, 1))
    data = prepare(probe.data, os.path.join(workdir, "vocab"), log=lambda s: None)
    kept = int(np.sum(data.unigram_counts[:data.tokenizer.eos_id] >= _MIN_COUNT.value))
    run = experiment.resolve(_config(kept + 6, 1))
    data = prepare(run.data, os.path.join(workdir, "llmjax"), log=print)
    tok = data.tokenizer
    words = np.array(tok.pieces(), dtype=object)
    path = os.path.join(workdir, "corpus.txt")
    stream = np.asarray(data.train_tokens, np.int64)
    ends = np.flatnonzero(stream == tok.eos_id)
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        start = 0
        for end in ends:
            doc = stream[start:end]
            doc = doc[doc < tok.eos_id]  # UNK: under min_count (gensim would drop it too)
            count += len(doc)
            f.write(" ".join(words[doc]) + "\n")
            start = end + 1
    return path, count, len(stream), kept + 6


def _gensim(corpus: str, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """(word -> vector, train seconds)."""
    from gensim.models import Word2Vec
    model = Word2Vec(vector_size=_DIM.value, window=_WINDOW.value, negative=_NEGATIVES.value, hs=0,
                     sg=int(_ARCH.value == "skipgram"), min_count=_MIN_COUNT.value, sample=_SAMPLE.value,
                     alpha=GENSIM_ALPHA, min_alpha=GENSIM_ALPHA * MIN_LR_RATIO, seed=seed,
                     workers=_WORKERS.value or os.cpu_count())
    model.build_vocab(corpus_file=corpus)
    t = time.time()
    model.train(corpus_file=corpus, total_words=model.corpus_total_words, total_examples=model.corpus_count,
                epochs=_EPOCHS.value)
    return {w: model.wv[w] for w in model.wv.index_to_key}, time.time() - t


def _llmjax(vocab_size: int, steps: int, workdir: str) -> tuple[dict[str, np.ndarray], float, float]:
    """(word -> vector, train seconds, steady tokens/s)."""
    run = experiment.resolve(_config(vocab_size, steps))
    t = time.time()
    experiment.train_and_evaluate(run, workdir, log=print)
    seconds = time.time() - t
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rates = [r["tokens_per_sec"] for r in map(json.loads, f) if "tokens_per_sec" in r]
    vectors, tokens, _ = load_embeddings(os.path.join(workdir, "embeddings.npy"))
    return dict(zip(tokens, vectors)), seconds, statistics.median(rates[1:] or rates or [float("nan")])


def _similarity(vectors: dict[str, np.ndarray]) -> dict[str, float]:
    words = list(vectors)
    m = np.stack([vectors[w] for w in words]).astype(np.float64)
    unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return similarity_scores(unit, {w: i for i, w in enumerate(words)})


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # the checkpointer's progress lines
    workdir = os.path.abspath(_WORKDIR.value)
    corpus, words, stream_tokens, vocab_size = _corpus(workdir)
    with open(corpus, encoding="utf-8") as f:  # the frequent words, by their counts in the corpus
        counts: dict[str, int] = {}
        for line in f:
            for w in line.split():
                counts[w] = counts.get(w, 0) + 1
    frequent = sorted(counts, key=lambda w: (-counts[w], w))[:FREQUENT]
    print(f"corpus: {words:,} words, {vocab_size - 6:,} of at least {_MIN_COUNT.value} occurrences; "
          f"{_EPOCHS.value} epochs")
    g_vectors, g_seconds = _gensim(corpus, _SEED.value)
    g2_vectors, _ = _gensim(corpus, _SEED.value + 1)
    # the same epochs over llmjax's stream (its [UNK] and EOS tokens read, never trained on)
    steps = max(1, round(_EPOCHS.value * stream_tokens / _BATCH.value))
    l_dir = os.path.join(workdir, "llmjax")
    for name in os.listdir(l_dir):  # a fresh run over the prepared corpus
        if name not in ("data", "tokenizer"):
            path = os.path.join(l_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    l_vectors, l_seconds, l_rate = _llmjax(vocab_size, steps, l_dir)
    total = words * _EPOCHS.value
    rows = [("gensim", total / g_seconds, "", _similarity(g_vectors)),
            ("llmjax", total / l_seconds, f"{l_rate * words / stream_tokens:,.0f}", _similarity(l_vectors))]
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {_ARCH.value}, dim "
          f"{_DIM.value}, window {_WINDOW.value}, {_NEGATIVES.value} negatives, sample {_SAMPLE.value:g}, "
          f"min_count {_MIN_COUNT.value}, {_EPOCHS.value} epochs, {words:,} words")
    print(f"{'trainer':8} {'words/s':>10} {'steady':>10} {'related':>8} {'unrelated':>9} {'AUC':>6}")
    for name, rate, steady, sim in rows:
        print(f"{name:8} {rate:>10,.0f} {steady:>10} {sim.get('sim_related', float('nan')):>8.3f} "
              f"{sim.get('sim_unrelated', float('nan')):>9.3f} {sim.get('sim_auc', float('nan')):>6.3f}")
    print(f"similarity pairs scored: {int(rows[0][3].get('sim_pairs', 0))}")
    probes = [w for w in frequent if w in g_vectors and w in l_vectors and w in g2_vectors]
    print(f"top-{TOP} neighbour overlap on the {len(probes)} most frequent words: gensim vs llmjax "
          f"{neighbour_overlap(g_vectors, l_vectors, probes, TOP):.3f}; gensim vs gensim (another seed) "
          f"{neighbour_overlap(g_vectors, g2_vectors, probes, TOP):.3f}")


if __name__ == "__main__":
    app.run(main)
