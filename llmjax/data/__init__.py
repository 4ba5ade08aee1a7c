"""Data: documents (sources), labelled classification data (labelled), tokenizers, cached token
streams and stateless batches (pipeline).

Nothing here imports models or training; tensorflow_datasets is imported only when a tfds-backed
source (stdlib, tfds:) is read.
"""
