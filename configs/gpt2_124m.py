"""GPT-2 small (124M): 12 layers, 768 wide, 12 heads, 1024 context, vocab 50257 padded to 50304,
tied embeddings, bf16 compute. Train on any tfds or text dataset:

python -m llmjax.main --config=configs/gpt2_124m.py --config.data.dataset=text:'/data/owt/*.txt'
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 12
    c.model.d_model = 768
    c.model.num_heads = 12
    c.model.mlp_dim = 3072
    c.model.position = "learned"
    c.model.ffn = "gelu"
    c.model.norm = "layernorm"
    c.model.use_bias = False  # nanoGPT's benchmark setting
    c.model.tie_embeddings = True
    c.model.vocab_multiple = 128  # 50257 -> 50304
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 50257
    c.data.spm_train_chars = 50_000_000
    c.data.seq_len = 1024
    c.train.dtype = "bfloat16"
    c.train.batch_size = 16
    c.train.grad_accum_steps = 1
    c.train.num_steps = 20000
    c.train.eval_every = 1000
    c.train.eval_steps = 50
    c.train.log_every = 50
    c.optim.lr = 6e-4
    c.optim.warmup_steps = 700
    c.optim.weight_decay = 0.1
    c.optim.b2 = 0.95
    c.checkpoint.every_steps = 1000
    return c
