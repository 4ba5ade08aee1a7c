"""Packaging entry point: `pip install -e ".[test]"` installs llmjax and its test tools."""
from setuptools import find_packages, setup

setup(
    name="llmjax",
    version="0.1.0",
    description="JAX/Flax pretraining of language models on GPUs and TPUs, and scaling studies.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["llmjax", "llmjax.*"]),
    install_requires=[
        # jax.set_mesh first appears in jax 0.7.1 (AxisType and make_mesh(axis_types=) in 0.7.0);
        # flax 0.12.0 is the first flax that itself requires jax>=0.7.1.
        "jax>=0.7.1",
        "flax>=0.12.0",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.8",
        "array_record",
        "sentencepiece>=0.2",
        "ml_collections>=1.0",
        "absl-py",
        "numpy",
        "tqdm",
        "tensorboardX",
        "sacrebleu>=2.0",  # seq2seq eval (imported when first used)
        "rouge-score",
        "scikit-learn",  # the seq2seq retrieval baseline's TF-IDF (llmjax.data.retrieval; imported when used)
        "safetensors",  # Hugging Face weights (llmjax.interop; small, no dependencies)
        "scipy",  # scaling-law fits (llmjax.scaling.fit; jax needs it too)
        "pyarrow",  # jsonl.zst, parquet: and hf_disk: corpora (llmjax.data.sources; imported when used)
    ],
    extras_require={
        # Hugging Face tokenizers (llmjax.convert, init_from a Hugging Face directory); reading a
        # pytorch_model.bin also needs torch (safetensors files do not).
        "hf": ["tokenizers", "protobuf"],
        # The tests compare with transformers' own models and tokenizers, built locally.
        # torch==2.13.0 is pinned so pip takes a CPU wheel where one is at hand; elsewhere add
        # --extra-index-url https://download.pytorch.org/whl/cpu. filelock: the lock of the JAX
        # compilation cache that the test session shares between workers (tests/conftest.py).
        "test": ["pytest", "pytest-xdist", "filelock", "scikit-learn", "tokenizers", "protobuf",
                 "transformers>=4.50", "torch==2.13.0", "seqeval", "gensim",  # gensim: experiments/bench_word2vec.py
                 "nbformat", "nbclient", "ipykernel", "matplotlib"],  # tests/test_notebooks.py runs notebooks/
        "plots": ["matplotlib"],
        # The classic baselines (python -m llmjax.baseline, llmjax.classic: imported when run).
        "classic": ["scikit-learn"],
    },
    entry_points={"console_scripts": ["llmjax=llmjax.main:run", "llmjax-sample=llmjax.sample:run",
                                      "llmjax-convert=llmjax.convert:run", "llmjax-sweep=llmjax.sweep:run",
                                      "llmjax-prepare=llmjax.prepare:run"]},
)
