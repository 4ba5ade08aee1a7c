"""Data: documents (sources), tokenizers, cached token streams and stateless batches (pipeline,
order); for BERT, sentence-pair batches (sentence_pairs) and MLM masking (masking); labelled
classification data (labelled).

Nothing here imports models or training; tensorflow_datasets is imported only when a tfds-backed
source (stdlib, tfds:) is read.
"""
