"""The baseline's config, read once: the task's own group (the classify or tag task's keys, so
the same data and the same splits as the neural run), the features, the classifier, and data
(tfds_data_dir; the tokenizer's keys when features read pieces).

`base_config(task, kind)` lists every key with its default, `resolve` checks them all (one-line
ConfigError naming the key and the fix) and freezes them into a `BaselineConfig`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import ml_collections

from llmjax import config as C
from llmjax.tasks import registry as tasks

# Which feature kinds each task reads: classification reads a text's tokens (counts, TF-IDF or
# the mean of their Word2Vec vectors); token labelling a window of word features per word
# (counts or TF-IDF) or the window's Word2Vec vectors side by side.
TASK_KINDS = {"classify": ("bow", "tfidf", "embedding"), "tag": ("bow", "tfidf", "embedding")}
KINDS = ("bow", "tfidf", "embedding")
UNITS = ("words", "pieces")
CLASS_WEIGHTS = ("", "balanced")
# A word: a run of letters, digits and underscores (an identifier, a number, a prose word; a
# snake_case name stays whole), or one punctuation character alone (an operator or a comma is a
# token: code's "(" and ":" say as much as its names). scikit-learn's default (two or more word
# characters) would drop both the punctuation and every one-letter name.
WORD_PATTERN = r"(?u)\w+|[^\w\s]"
GROUPS = ("task", "features", "classifier", "data")


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    kind: str = "tfidf"  # bow (token counts) | tfidf (sublinear tf, l2 rows) | embedding (Word2Vec vectors from features.embeddings; classify: the tokens' mean; tag: the vectors of the words at -window..+window side by side); tag's bow/tfidf: of each word's window features
    units: str = "words"  # classify: what a token is: words (token_pattern) | pieces (the tokenizer's; see tokenizer_from)
    token_pattern: str = WORD_PATTERN  # units=words: a word, as a regular expression (default: identifiers, numbers and words whole, each punctuation character alone)
    lowercase: bool = False  # units=words: lowercase the words first (code's case tells names apart; tag: the embedding kind's lookups only)
    ngram_min: int = 1  # bow/tfidf: the shortest n-gram of tokens
    ngram_max: int = 1  # bow/tfidf: the longest n-gram of tokens
    min_df: int = 1  # bow/tfidf: keep the features of at least this many train texts (tag: words)
    max_features: int = 0  # bow/tfidf: keep the most frequent this many features (0 = all)
    window: int = 2  # tag: the words at -window..+window beside each word
    affix: int = 3  # tag: prefixes and suffixes of 1..affix characters
    embeddings: str = ""  # embedding: the embeddings file a Word2Vec run saved
    tokenizer_from: str = ""  # units=pieces: a run's workdir (or tokenizer directory) whose tokenizer to use ('' = one trained on the train texts per config.data, saved in the workdir)

    def validate(self) -> None:
        C.check_choice("features.kind", self.kind, KINDS)
        C.check_choice("features.units", self.units, UNITS)
        for key in ("ngram_min", "ngram_max", "min_df", "affix"):
            C.check_positive(f"features.{key}", getattr(self, key))
        for key in ("max_features", "window"):
            C.check_positive(f"features.{key}", getattr(self, key), allow_zero=True)
        if self.ngram_max < self.ngram_min:
            C.fail("features.ngram_max", self.ngram_max,
                   f"must be at least config.features.ngram_min={self.ngram_min}")
        if self.kind == "embedding" and not self.embeddings:
            C.fail("features.embeddings", self.embeddings, "kind 'embedding' reads Word2Vec "
                   "vectors: name the embeddings file a Word2Vec run saved")
        if self.units == "words":
            _check_pattern(self.token_pattern)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    C: float = 1.0  # inverse L2 strength of the logistic regression (larger: less regularised)
    max_iter: int = 1000  # L-BFGS iterations at most (a fit that stops there says so)
    class_weight: str = ""  # '' (every example alike) | balanced (weights inverse to the train class counts)

    def validate(self) -> None:
        C.check_positive("classifier.C", self.C)
        C.check_positive("classifier.max_iter", self.max_iter)
        C.check_choice("classifier.class_weight", self.class_weight, CLASS_WEIGHTS)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    task: Any  # the classify or tag task's config dataclass (llmjax.tasks.registry)
    features: FeaturesConfig
    classifier: ClassifierConfig
    data: C.DataConfig  # tfds_data_dir; tokenizer, vocab_size, spm_model_type, spm_train_chars for pieces


def base_config(task: str = "classify", kind: str = "tfidf") -> ml_collections.ConfigDict:
    """Every key the baseline reads for this task, with its default."""
    c = ml_collections.ConfigDict()
    c.task = tasks.default_group(task)
    c.features = C.to_group(FeaturesConfig)
    c.features.kind = kind
    c.classifier = C.to_group(ClassifierConfig)
    c.data = C.to_group(C.DataConfig)
    return c


def resolve(cfg: ml_collections.ConfigDict) -> BaselineConfig:
    """Validate, then freeze (cheap: no data read)."""
    for group in cfg:
        if group not in GROUPS:
            C.fail(group, "...", f"unknown group of a baseline config; known groups: {', '.join(GROUPS)}")
    for group in GROUPS:
        if group not in cfg:
            C.fail(group, None, f"the config lacks the group '{group}': start from "
                                "llmjax.classic.config.base_config()")
    name = cfg.task.get("name", "")
    if name not in TASK_KINDS:
        C.fail("task.name", name, f"a baseline fits the tasks {', '.join(TASK_KINDS)}")
    run = BaselineConfig(task=tasks.resolve(cfg.task),
                         features=C.from_group(FeaturesConfig, cfg.features, "features"),
                         classifier=C.from_group(ClassifierConfig, cfg.classifier, "classifier"),
                         data=C.from_group(C.DataConfig, cfg.data, "data"))
    if run.features.kind not in TASK_KINDS[name]:
        C.fail("features.kind", run.features.kind,
               f"task {name!r} reads the feature kinds {', '.join(TASK_KINDS[name])}")
    if name == "tag" and run.features.units != "words":
        C.fail("features.units", run.features.units,
               "the tag task's features are those of the dataset's words: leave units='words'")
    return run


def _check_pattern(pattern: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        C.fail("features.token_pattern", pattern, f"not a regular expression ({e})")
    if compiled.groups:  # scikit-learn's rule: findall would return the group, not the token
        C.fail("features.token_pattern", pattern, "must have no capturing group: write (?:...)")
    if compiled.fullmatch("") is not None:
        C.fail("features.token_pattern", pattern, "matches the empty string: every token "
               "must have at least one character")
