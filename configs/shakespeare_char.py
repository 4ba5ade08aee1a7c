"""nanoGPT's shakespeare_char model, for side-by-side comparisons (6 layers, 384 wide, 6 heads,
seq 256, char vocabulary, dropout 0.2, first 90% of the text for training, last 10% for validation).

The text is not shipped (llmjax downloads nothing): fetch "tiny shakespeare" (1,115,394
characters, from the karpathy/char-rnn repository, data/tinyshakespeare/input.txt) to
data/tinyshakespeare.txt, or point at your copy:

python -m llmjax.main --config=configs/shakespeare_char.py \
    --config.data.dataset=text:/path/to/tinyshakespeare.txt
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 6
    c.model.d_model = 384
    c.model.num_heads = 6
    c.model.mlp_dim = 1536
    c.model.dropout = 0.2
    c.model.use_bias = False
    c.model.vocab_multiple = 1
    c.data.dataset = "text:data/tinyshakespeare.txt"
    c.data.tokenizer = "char"
    c.data.val_fraction = 0.1
    c.data.seq_len = 256
    c.train.batch_size = 64
    c.train.num_steps = 5000
    c.train.eval_every = 250
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.optim.min_lr_ratio = 0.1
    c.optim.b2 = 0.99
    c.checkpoint.every_steps = 1000
    return c
