"""Token labelling with a small LSTM from scratch (the representation ladder's recurrent rung):
the role of every identifier in standard-library code, split by file. One direction, as GPT: a
word is tagged at its first piece from the words before it. Same data, steps and optimizer as
configs/gpt_small_tag.py.

python -m llmjax.main --config=configs/lstm_small_tag.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="lstm", task="tag")
    c.init_from = ""  # from scratch
    c.model.num_layers = 2  # configs/lstm_small.py's shape
    c.model.d_model = 256
    c.model.dropout = 0.1
    c.task.dataset = "stdlib_roles"
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 300
    c.train.batch_size = 32
    c.train.eval_every = 100
    c.train.log_every = 20
    c.train.eval_steps = 0  # the whole eval split
    c.optim.lr = 2e-3
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 30
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 300
    return c
