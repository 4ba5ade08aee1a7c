"""BERT-base (110M): 12 layers, 768 wide, 12 heads, 3072 MLP, 512 positions, post-LN, exact
GELU, LayerNorm eps 1e-12; MLM + NSP with BERT's optimiser (AdamW b2 0.999, eps 1e-6, weight
decay 0.01, linear decay after 10k warm-up steps), bf16 compute. For real hardware:

python -m llmjax.main --config=configs/bert_base.py --config.data.dataset=tfds:wikipedia/20230601.en
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="bert", task="mlm")
    c.model.num_layers = 12
    c.model.d_model = 768
    c.model.num_heads = 12
    c.model.mlp_dim = 3072
    c.model.max_len = 512
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.1
    c.model.vocab_multiple = 128
    c.task.mask_rate = 0.15
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 30522  # BERT's uncased WordPiece size
    c.data.spm_train_chars = 50_000_000
    c.data.seq_len = 512
    c.train.dtype = "bfloat16"
    c.train.batch_size = 256
    c.train.num_steps = 1_000_000
    c.train.eval_every = 10_000
    c.train.eval_steps = 50
    c.train.log_every = 100
    c.optim.lr = 1e-4
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 10_000
    c.optim.b2 = 0.999
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 10_000
    return c
