"""TF-IDF of each word's window features + logistic regression on the embedded stdlib_roles
token-labelling task (the tag task's data and splits; results beside the neural runs'):

python -m llmjax.baseline --config=configs/tfidf_tag.py [--workdir=runs/tfidf_tag]
python -m llmjax.baseline --config=configs/tfidf_tag.py --config.task.dataset=tfds:conll2003
python -m llmjax.baseline --config=configs/tfidf_tag.py --config.features.kind=embedding --config.features.embeddings=runs/word2vec_stdlib/embeddings.npy
"""
from llmjax.classic.config import base_config


def get_config():
    c = base_config(task="tag", kind="tfidf")
    c.task.dataset = "stdlib_roles"
    c.features.window = 2  # the words at -2..+2
    c.features.affix = 3  # prefixes and suffixes of 1..3 characters
    c.features.min_df = 2
    c.classifier.C = 10.0
    c.classifier.max_iter = 1000
    return c
