"""Fine-tune gpt_small (classifier on the last real token) on the embedded stdlib-package task.
Pretrain first (configs/gpt_small.py), then:

python -m llmjax.main --config=configs/gpt_small_classify.py
python -m llmjax.main --config=configs/gpt_small_classify.py --config.init_from= --workdir=runs/gpt_scratch   # from scratch
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="gpt", task="classify")
    c.init_from = "runs/gpt_small"  # the pretraining run's workdir (its newest checkpoint and tokenizer)
    c.model.num_layers = 4  # the pretrained model's shape (configs/gpt_small.py)
    c.model.d_model = 256
    c.model.num_heads = 4
    c.model.mlp_dim = 1024
    c.model.dropout = 0.1
    c.task.dataset = "stdlib_packages"
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 150
    c.train.batch_size = 32
    c.train.eval_every = 50
    c.train.log_every = 10
    c.train.eval_steps = 0
    c.optim.lr = 1e-3
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 15
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 150
    return c
