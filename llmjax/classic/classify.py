"""The classification baseline: any dataset the classify task reads (llmjax.data.labelled, with
the task's own keys, so the same examples and splits), each text (pair) as bag of words,
TF-IDF or the mean of Word2Vec vectors, a logistic regression fitted on train and scored on
eval with the classify task's metrics and majority baseline.

Shape key: N examples of a split, K classes, F features, D embedding dimensions.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmjax.classic import averaged, checks, features, linear, tokens
from llmjax.classic.config import BaselineConfig
from llmjax.classic.outcome import Outcome
from llmjax.config import UserError
from llmjax.data.labelled import Labelled, load_labelled
from llmjax.evaluation.classification import classification_metrics, majority_baselines


def load(run: BaselineConfig, log: Callable[[str], None]) -> Labelled:
    """Both splits, read as the classify task reads them."""
    t = run.task
    keys = tuple(k.strip() for k in t.text_keys.split(",") if k.strip())
    try:
        return load_labelled(t.dataset, tfds_data_dir=run.data.tfds_data_dir, text_keys=keys,
                             label_key=t.label_key, train_split=t.train_split,
                             eval_split=t.eval_split, max_examples=t.max_examples, log=log)
    except UserError:
        raise
    except ValueError as e:  # the data modules' one-line errors
        raise UserError(str(e)) from e


def fit(run: BaselineConfig, workdir: str, log: Callable[[str], None]) -> Outcome:
    """Fit and score the baseline; UserError for bad input, before any fitting."""
    f = run.features
    header = (averaged.checked_header(f.embeddings, f.units, f.tokenizer_from)  # before any data
              if f.kind == "embedding" else None)
    data = load(run, log)
    names = data.label_names
    checks.check_splits(run.task.dataset, data.train_labels, data.eval_labels, names)
    tok = (tokens.tokenizer(run, data.train_texts, workdir, log) if f.units == "pieces" else None)
    if header is not None and tok is not None:  # the very tokenizer the pieces were trained on
        averaged.check_fit(f.embeddings, header["count"], header["tokenizer_fingerprint"], f.units, tok)
    train = tokens.text_tokens(run, tok, data.train_texts, data.train_pairs)
    evals = tokens.text_tokens(run, tok, data.eval_texts, data.eval_pairs)
    t0 = time.time()
    x_train, x_eval, described = _features(run, train, evals)
    log(f"features: {described}")
    model, converged = linear.fit(x_train, data.train_labels, run.classifier)
    seconds = time.time() - t0
    steps = linear.iterations(model)
    if not converged:
        log(f"classifier: L-BFGS stopped at config.classifier.max_iter={run.classifier.max_iter} "
            "before converging: raise it for the optimum")
    k = len(names)
    metrics = _scores(linear.probabilities(model, x_eval, k), data.eval_labels, names)
    fitted = _scores(linear.probabilities(model, x_train, k), data.train_labels, names)
    baselines = majority_baselines(data.train_labels, data.eval_labels, k)
    line = (f"{f.kind}+LR: eval loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}, "
            f"macro-F1 {metrics['f1_macro']:.4f} (majority class {baselines['majority_accuracy']:.4f}); "
            f"train accuracy {fitted['accuracy']:.4f}, {steps} L-BFGS iterations, {seconds:.1f}s")
    train_row = {"loss": fitted["loss"], "accuracy": fitted["accuracy"],
                 "features": int(x_train.shape[1]), "fit_seconds": seconds}
    return Outcome(metrics, baselines, steps, train_row, line, linear.num_params(model))


def _features(run: BaselineConfig, train: list[list[str]], evals: list[list[str]]
              ) -> tuple[Any, Any, str]:
    """(train features, eval features, a description) of the token lists."""
    f = run.features
    if f.kind != "embedding":
        vec = features.vectorizer(f)
        x_train_NxF = vec.fit_transform(train)
        if not x_train_NxF.shape[1]:
            raise UserError(f"config.features.min_df={f.min_df}: no {f.units[:-1]} n-gram is in that "
                            "many train texts: lower min_df")
        x_eval_NxF = vec.transform(evals)
        grams = f"{f.ngram_min}-{f.ngram_max}-grams" if f.ngram_max > 1 else "single tokens"
        return x_train_NxF, x_eval_NxF, (f"{f.kind} of {f.units} ({grams}, min_df {f.min_df}): "
                                         f"{x_train_NxF.shape[1]:,} features")
    from llmjax.data.embeddings_file import load_embeddings

    vectors_VxD, names, _ = load_embeddings(f.embeddings)
    rows = averaged.token_rows(names, f.units)
    x_train_NxD, found = averaged.mean_vectors(train, rows, vectors_VxD)
    averaged.check_found(f.embeddings, found, f"texts' {f.units}", len(names),
                         "config.features.token_pattern/lowercase split them")
    x_eval_NxD, found_eval = averaged.mean_vectors(evals, rows, vectors_VxD)
    x_train_NxD, x_eval_NxD = averaged.standardise(x_train_NxD, x_eval_NxD)
    return x_train_NxD, x_eval_NxD, (f"mean of {vectors_VxD.shape[1]}-dimensional vectors of "
                                     f"{f.units} ({found:.1%} of train tokens, {found_eval:.1%} of "
                                     f"eval tokens in the file's {len(names):,})")


def _scores(probs_NxK: np.ndarray, labels_N: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The classify task's eval metrics of these probabilities: mean cross-entropy as its loss,
    then llmjax.evaluation.classification's scores of the argmax."""
    k = len(names)
    confusion_KxK = np.bincount(labels_N * k + probs_NxK.argmax(axis=1),
                                minlength=k * k).reshape(k, k).astype(np.float64)
    true_N = probs_NxK[np.arange(len(labels_N)), labels_N]
    loss = float(-np.mean(np.log(np.maximum(true_N, np.finfo(np.float64).tiny))))
    return {"loss": loss, **classification_metrics(confusion_KxK, names)}
