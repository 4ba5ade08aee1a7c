"""Fine-tune bert_small on GLUE SST-2 (binary sentiment). tfds never downloads here: prepare the
dataset on a machine with internet (`tfds build glue/sst2 --file_format=array_record`) and point
config.data.tfds_data_dir at it. SST-2's test labels are hidden, so evaluation uses validation.
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="bert", task="classify")
    c.init_from = "runs/bert_small"
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 4, 256, 4, 1024
    c.model.norm_position = "pre"
    c.model.dropout = c.model.attention_dropout = 0.1
    c.task.dataset = "tfds:glue/sst2"
    c.task.text_keys = "sentence"
    c.task.eval_split = "validation"
    c.data.tokenizer, c.data.vocab_size, c.data.seq_len = "sentencepiece", 4096, 64
    c.train.num_steps, c.train.batch_size, c.train.eval_every = 2000, 32, 500
    c.optim.lr, c.optim.schedule, c.optim.min_lr_ratio, c.optim.warmup_steps = 1e-4, "linear", 0.0, 200
    c.optim.b2, c.optim.weight_decay = 0.999, 0.01
    c.checkpoint.every_steps = 500
    return c
