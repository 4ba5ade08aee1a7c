"""Token labelling with a small GPT on the embedded task: the role of every identifier in
standard-library code, split by file. From scratch by default: a few CPU minutes. A causal model
tags each word at its first piece having read only the words before it (`f` in `f(x)` before
its parenthesis), so it leans on the left context: def/class/import/param positions, a dot.
Measured: span F1 0.8503 (rotary positions; 0.8164 with a learned table) against the baseline's
0.3944, where BERT reaches 0.9745 (configs/bert_small_tag.py).

python -m llmjax.main --config=configs/gpt_small_tag.py --workdir=runs/gpt_tag

Warm-started from a GPT language-model run (configs/gpt_small.py: the same shape):
  --config.init_from=runs/gpt_small --config.model.position=learned --config.model.num_layers=4
  --config.model.d_model=256 --config.model.mlp_dim=1024 --config.optim.lr=1e-3
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="gpt", task="tag")
    c.model.num_layers = 2
    c.model.position = "rope"
    c.model.d_model = 128
    c.model.num_heads = 4
    c.model.mlp_dim = 512
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
