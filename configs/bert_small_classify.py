"""Fine-tune bert_small on the embedded task: which standard-library package a chunk of code
comes from (about 10 classes, split by file). Pretrain first (configs/bert_small.py), then:

python -m llmjax.main --config=configs/bert_small_classify.py
python -m llmjax.main --config=configs/bert_small_classify.py --config.init_from= --workdir=runs/bert_scratch   # from scratch

Other labelled sets (prepared with tfds beforehand), e.g. SST-2:
  --config.task.dataset=tfds:glue/sst2 --config.task.text_keys=sentence --config.task.eval_split=validation
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="bert", task="classify")
    c.init_from = "runs/bert_small"  # the pretraining run's workdir (its newest checkpoint and tokenizer)
    c.model.num_layers = 4  # the pretrained model's shape (init_from checks it against its config.json)
    c.model.norm_position = "pre"
    c.model.d_model = 256
    c.model.num_heads = 4
    c.model.mlp_dim = 1024
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.1
    c.task.dataset = "stdlib_packages"
    c.data.tokenizer = "sentencepiece"  # the pretraining run's tokenizer is reused
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.num_steps = 150
    c.train.batch_size = 32
    c.train.eval_every = 50
    c.train.log_every = 10
    c.train.eval_steps = 0  # the whole eval split
    c.optim.lr = 1e-3
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 15
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 150
    return c
