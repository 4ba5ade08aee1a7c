"""A small GPT on the embedded stdlib corpus: the default run, about 10 minutes on a 2-core CPU.

python -m llmjax.main --config=configs/gpt_small.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 4
    c.model.d_model = 256
    c.model.num_heads = 4
    c.model.mlp_dim = 1024
    c.model.position = "learned"
    c.model.ffn = "gelu"
    c.model.norm = "layernorm"
    c.data.dataset = "stdlib"
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 1400
    c.train.batch_size = 16
    c.train.eval_every = 350
    c.train.eval_steps = 0  # the whole validation split
    c.train.log_every = 10
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.checkpoint.every_steps = 350
    return c
