"""Bag of words (token counts) + logistic regression on the embedded stdlib-package task (the
classify task's data and splits; results beside the neural runs'):

python -m llmjax.baseline --config=configs/bow_classify.py [--workdir=runs/bow_classify]
python -m llmjax.baseline --config=configs/bow_classify.py --config.features.units=pieces \
    --config.features.tokenizer_from=runs/gpt_small   # over a pretraining run's tokenizer pieces
"""
from llmjax.classic.config import base_config


def get_config():
    c = base_config(task="classify", kind="bow")
    c.task.dataset = "stdlib_packages"
    c.features.units = "words"
    c.features.ngram_min, c.features.ngram_max = 1, 1
    c.features.min_df = 2
    c.classifier.C = 1.0
    c.classifier.max_iter = 2000  # raw counts: L-BFGS takes longer than on TF-IDF's unit rows
    return c
