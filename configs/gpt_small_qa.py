"""Extractive QA on the embedded task (configs/bert_small_qa.py's) with a GPT warm-started from a
language model pretrained on the standard library with this task's eval files held out.

python -m llmjax.main --config=configs/gpt_small.py --workdir=runs/gpt_rope_docs_holdout \
    --config.model.position=rope --config.data.holdout=stdlib_docstring_qa,stdlib_docstrings \
    --config.data.seq_len=256 --config.train.batch_size=8
python -m llmjax.main --config=configs/gpt_small_qa.py

A row is `question [SEP] window EOS`: causal attention lets every context token read the
question, and the docstring follows its `def NAME`, so the left context is the one the span needs.
Measured (2-core CPU): EM 48.51, F1 63.42 in 519 s, below the baseline's F1 71.98 (first sentence
after the name), as BERT is; 212 of the 536 answers are another function's summary in the same
context (docs/features.md, "Extractive question answering").
"""
from llmjax.experiment import sibling_config


def get_config():
    c = sibling_config(__file__, "bert_small_qa.py")  # the task, data, schedule and eval
    c.model = sibling_config(__file__, "gpt_small.py").model  # the pretrained model's shape and function
    c.model.position = "rope"  # as the pretraining run (see above)
    c.init_from = "runs/gpt_rope_docs_holdout"  # the pretraining run's workdir (its newest checkpoint and tokenizer)
    c.optim.lr = 1e-3  # a warm start: bert_small_qa's 2e-3 is for training from scratch
    return c
