"""A small LSTM LM on the embedded stdlib corpus, to set beside configs/gpt_small.py (same data,
tokenizer, seq_len, batch, optimizer and whole-validation eval): 2 layers of 256 units (2.1M
matmul parameters against gpt_small's 4.2M), 800 steps, about 4 minutes on a 2-core CPU
(measured: 250 s, 8,300-9,100 tokens/s). workdir/eval/per_position_loss.json holds its loss at
each context position, as every LM run's does (experiments/context_loss.py prints them side by
side; Kaplan et al. 2020 fig. 7).

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
