"""The token-labelling baseline: any dataset the tag task reads (llmjax.data.tagged, with the
task's own keys, so the same examples and splits), each word as the bow or tfidf of its window
features (llmjax.classic.window) or its window's Word2Vec vectors side by side
(llmjax.classic.windowed), a logistic regression fitted on train's words and scored on
eval's with the tag task's metrics (token accuracy and seqeval's span P/R/F1, llmjax.
evaluation.spans) beside its baseline (each word's most frequent train tag).

Shape key: W words of a split (all its examples together), K tags, F features.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmjax.classic import averaged, checks, features, linear, window, windowed
from llmjax.classic.config import BaselineConfig
from llmjax.classic.outcome import Outcome
from llmjax.config import UserError
from llmjax.data.tagged import FrequentTag, describe, open_tagged, words_of
from llmjax.evaluation.spans import span_scores
from llmjax.tasks.tag import SPAN_KEYS, span_metrics


def load(run: BaselineConfig, log: Callable[[str], None]) -> tuple[dict[str, list], tuple[str, ...]]:
    """{split: [(text, spans_Nx2, tags)]} read as the tag task reads them, and the tag names."""
    t = run.task
    try:
        stream = open_tagged(t.dataset, tfds_data_dir=run.data.tfds_data_dir,
                             tokens_key=t.tokens_key, tags_key=t.tags_key,
                             train_split=t.train_split, eval_split=t.eval_split,
                             val_fraction=t.val_fraction, max_examples=t.max_examples)
        rows: dict[str, list] = {"train": [], "eval": []}
        for split, _, text, spans_Nx2, tags in stream:
            rows[split].append((text, spans_Nx2, tags))
    except UserError:
        raise
    except ValueError as e:  # the data modules' one-line errors
        raise UserError(str(e)) from e
    log(describe(t.dataset, stream.stats, len(stream.tag_names)))
    return rows, stream.tag_names


def fit(run: BaselineConfig, workdir: str, log: Callable[[str], None]) -> Outcome:
    """Fit and score the baseline; UserError for bad input, before any fitting."""
    f = run.features
    if f.kind == "embedding":  # the file's kind, from its header alone, before any data
        averaged.checked_header(f.embeddings, f.units, words_only=True)
    rows, names = load(run, log)
    labels = {s: np.array([t for _, _, tags in rows[s] for t in tags], np.int64) for s in rows}
    checks.check_splits(run.task.dataset, labels["train"], labels["eval"], names, what="words")
    t0 = time.time()
    x_train_WxF, x_eval_WxF, described = _features(run, rows)
    log(f"features: {described}")
    model, converged = linear.fit(x_train_WxF, labels["train"], run.classifier)
    seconds = time.time() - t0
    steps = linear.iterations(model)
    if not converged:
        log(f"classifier: L-BFGS stopped at config.classifier.max_iter={run.classifier.max_iter} "
            "before converging: raise it for the optimum")
    k = len(names)
    metrics = _scores(linear.probabilities(model, x_eval_WxF, k), rows["eval"], names)
    fitted = _scores(linear.probabilities(model, x_train_WxF, k), rows["train"], names)
    baselines = _frequent_tag(rows, names)
    line = (f"{f.kind}+LR: eval loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, "
            f"span P/R/F1 {metrics['span_precision']:.4f}/{metrics['span_recall']:.4f}/"
            f"{metrics['span_f1']:.4f} (most frequent tag: span F1 {baselines['baseline_span_f1']:.4f}, "
            f"accuracy {baselines['baseline_accuracy']:.4f}); train accuracy {fitted['accuracy']:.4f}, "
            f"{steps} L-BFGS iterations, {seconds:.1f}s")
    train_row = {"loss": fitted["loss"], "accuracy": fitted["accuracy"], "span_f1": fitted["span_f1"],
                 "features": int(x_train_WxF.shape[1]), "fit_seconds": seconds}
    return Outcome(metrics, baselines, steps, train_row, line, linear.num_params(model))


def _features(run: BaselineConfig, rows: dict[str, list]) -> tuple[Any, Any, str]:
    """(train features, eval features, a description) of every word of the splits."""
    f = run.features
    if f.kind == "embedding":
        return _embedded(run, rows)
    vec = features.vectorizer(f, ngrams=False)
    x_train_WxF = vec.fit_transform(window.featurise([(t, s) for t, s, _ in rows["train"]], f.window, f.affix))
    x_eval_WxF = vec.transform(window.featurise([(t, s) for t, s, _ in rows["eval"]], f.window, f.affix))
    return x_train_WxF, x_eval_WxF, (f"{f.kind} of each word's window (+-{f.window} words, affixes "
                                     f"up to {f.affix}, min_df {f.min_df}): {x_train_WxF.shape[1]:,} features")


def _embedded(run: BaselineConfig, rows: dict[str, list]) -> tuple[np.ndarray, np.ndarray, str]:
    """The Word2Vec window vectors of every word (llmjax.classic.windowed), the words looked up
    as the dataset splits them (lowercased with features.lowercase), standardised by train's."""
    from llmjax.data.embeddings_file import load_embeddings

    f = run.features
    vectors_VxD, tokens, _ = load_embeddings(f.embeddings)
    lookup = averaged.token_rows(tokens, "words")

    def vectors(split: str) -> tuple[np.ndarray, float]:
        sentences = [[w.lower() if f.lowercase else w for w in words_of(text, spans_Nx2)]
                     for text, spans_Nx2, _ in rows[split]]
        return windowed.window_vectors(sentences, lookup, vectors_VxD, f.window)
    x_train_WxF, found = vectors("train")
    averaged.check_found(f.embeddings, found, "words", len(tokens),
                         "the dataset splits them (lowercased with config.features.lowercase)")
    x_eval_WxF, found_eval = vectors("eval")
    x_train_WxF, x_eval_WxF = averaged.standardise(x_train_WxF, x_eval_WxF)
    offsets = 2 * f.window + 1
    return x_train_WxF, x_eval_WxF, (
        f"the {vectors_VxD.shape[1]}-dimensional vectors of the words at -{f.window}..+{f.window} side "
        f"by side and {offsets} missing-word indicators: {x_train_WxF.shape[1]:,} features ({found:.1%} "
        f"of train words, {found_eval:.1%} of eval words in the file's {len(tokens):,})")


def _sentences(flat_W: np.ndarray, rows: list, names: tuple[str, ...]) -> list[list[str]]:
    """Per-word tag ids of all examples back into each example's tag names."""
    out, start = [], 0
    for _, _, tags in rows:
        out.append([names[t] for t in flat_W[start:start + len(tags)]])
        start += len(tags)
    return out


def _scores(probs_WxK: np.ndarray, rows: list, names: tuple[str, ...]) -> dict[str, Any]:
    """The tag task's eval metrics: mean cross-entropy per word as the loss, then the span
    scores of the argmax tags under the task's names."""
    true_W = np.array([t for _, _, tags in rows for t in tags], np.int64)
    p_W = probs_WxK[np.arange(len(true_W)), true_W]
    loss = float(-np.mean(np.log(np.maximum(p_W, np.finfo(np.float64).tiny))))
    scores = span_scores(_sentences(true_W, rows, names), _sentences(probs_WxK.argmax(1), rows, names))
    return {"loss": loss, **span_metrics(scores)}


def _frequent_tag(rows: dict[str, list], names: tuple[str, ...]) -> dict[str, float]:
    """The tag task's baseline on eval, under its names: each word's most frequent train tag."""
    frequent = FrequentTag(len(names))
    for text, spans_Nx2, tags in rows["train"]:
        frequent.add(words_of(text, spans_Nx2), tags)
    pred = [[names[t] for t in frequent.predict(words_of(text, spans))] for text, spans, _ in rows["eval"]]
    true = [[names[t] for t in tags] for _, _, tags in rows["eval"]]
    scores = span_metrics(span_scores(true, pred))
    return {f"baseline_{k}": scores[k] for k in ("accuracy", *(f"span_{m}" for m in SPAN_KEYS))}
