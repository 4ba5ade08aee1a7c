"""Classify with a small LSTM from scratch (the representation ladder's recurrent rung): which
standard-library package a chunk of code comes from, split by file. Same data, tokenizer
settings, steps and optimizer as configs/gpt_small_classify.py; the classifier reads the last
real token's state. Warm-start from an LSTM language-model run with
--config.init_from=runs/lstm_small (configs/lstm_small.py: the same shape).

python -m llmjax.main --config=configs/lstm_small_classify.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="lstm", task="classify")
    c.init_from = ""  # from scratch
    c.model.num_layers = 2  # configs/lstm_small.py's shape
    c.model.d_model = 256
    c.model.dropout = 0.1
    c.task.dataset = "stdlib_packages"
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 150
    c.train.batch_size = 32
    c.train.eval_every = 50
    c.train.log_every = 10
    c.train.eval_steps = 0  # the whole eval split
    c.optim.lr = 2e-3
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 15
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 150
    return c
