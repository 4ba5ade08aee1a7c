"""Fine-tune bert_small on IMDB reviews (binary sentiment, long texts cut to seq_len). Prepare
the dataset beforehand (`tfds build imdb_reviews --file_format=array_record`); config.data.
tfds_data_dir points at it. IMDB has no validation split: evaluation uses test.
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="bert", task="classify")
    c.init_from = "runs/bert_small"
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 4, 256, 4, 1024
    c.model.norm_position = "pre"
    c.model.dropout = c.model.attention_dropout = 0.1
    c.task.dataset = "tfds:imdb_reviews"
    c.task.text_keys = "text"
    c.task.eval_split = "test"
    c.data.tokenizer, c.data.vocab_size, c.data.seq_len = "sentencepiece", 4096, 256
    c.train.num_steps, c.train.batch_size, c.train.eval_every = 2000, 32, 500
    c.train.eval_steps = 100
    c.optim.lr, c.optim.schedule, c.optim.min_lr_ratio, c.optim.warmup_steps = 1e-4, "linear", 0.0, 200
    c.optim.b2, c.optim.weight_decay = 0.999, 0.01
    c.checkpoint.every_steps = 500
    return c
