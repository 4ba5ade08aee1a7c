"""A small LSTM LM on the embedded stdlib corpus, to set beside configs/gpt_small.py (same data,
tokenizer, seq_len, batch, optimizer and whole-validation eval): about 10 minutes on a 2-core
CPU, like gpt_small. Matched in time, not size: a time step of the recurrence runs after the
last, so on this CPU the LSTM trains ~2,000 tokens/s at 2 x 512 units (4.9M matmul parameters,
gpt_small's 4.2M), and this 2 x 256 one (2.1M) takes 800 steps. workdir/eval/
per_position_loss.json holds the loss at each context position of both runs (Kaplan et al.
2020 fig. 7: the LSTM's stops falling after ~100 tokens).

python -m llmjax.main --config=configs/lstm_small.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config("lstm")
    c.model.num_layers = 2
    c.model.d_model = 256
    c.model.hidden = 0  # = d_model: 2.1M matmul parameters, 12.7 MFLOPs/token
    c.data.dataset = "stdlib"
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 800
    c.train.batch_size = 16
    c.train.eval_every = 400
    c.train.eval_steps = 0  # the whole validation split
    c.train.log_every = 10
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.checkpoint.every_steps = 400
    return c
