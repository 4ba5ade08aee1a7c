"""TF-IDF + logistic regression on the embedded stdlib-package task (the classify task's data
and splits; results beside the neural runs'):

python -m llmjax.baseline --config=configs/tfidf_classify.py [--workdir=runs/tfidf_classify]
"""
from llmjax.classic.config import base_config


def get_config():
    c = base_config(task="classify", kind="tfidf")
    c.task.dataset = "stdlib_packages"
    c.features.units = "words"
    c.features.ngram_min, c.features.ngram_max = 1, 1
    c.features.min_df = 1
    c.classifier.C = 10.0  # unit-norm rows: a weaker penalty than scikit-learn's C=1
    c.classifier.max_iter = 1000
    return c
