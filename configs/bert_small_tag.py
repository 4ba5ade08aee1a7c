"""Token labelling with a small BERT on the embedded task: the role of every identifier in
standard-library code (def, class, param, assign, call, attr, import, kwarg, or O), split by file.
From scratch by default: a few CPU minutes. Rotary positions: a bidirectional model learns word
order only from its positions, and a learned table barely moves in 300 steps (at 100 steps span
F1 0.65 with rope against 0.48 with learned positions; a causal GPT gets order from its mask).

python -m llmjax.main --config=configs/bert_small_tag.py --workdir=runs/bert_tag

Warm-started from a BERT masked-LM run (configs/bert_small.py: the same shape):
  --config.init_from=runs/bert_small --config.model.position=learned --config.model.num_layers=4
  --config.model.d_model=256 --config.model.mlp_dim=1024 --config.optim.lr=1e-3
Other tagged sets: --config.task.dataset=tfds:conll2003 (prepared with tfds beforehand), or
--config.task.dataset='jsonl:data/*.jsonl' ({"tokens": [...], "tags": [...]} per line).
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="bert", task="tag")
    c.model.num_layers = 2
    c.model.position = "rope"
    c.model.norm_position = "pre"
    c.model.d_model = 128
    c.model.num_heads = 4
    c.model.mlp_dim = 512
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.0
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
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 300
    return c
