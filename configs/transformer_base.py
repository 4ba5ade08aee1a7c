"""The base Transformer of Vaswani et al. 2017: 6+6 layers, d_model 512, 8 heads, FFN 2048,
post-LN, ReLU, dropout 0.1, label smoothing 0.1, sinusoidal positions, one shared vocabulary
(37k BPE in the paper) with tied source, target and output embeddings scaled by sqrt(d_model),
Adam (0.9, 0.98, 1e-9) on the inverse-square-root schedule with 4,000 warm-up steps, beam 4 and
alpha 0.6 at test time. Set c.task.dataset to a prepared tfds translation set, e.g.
tfds:wmt14_translate/de-en (the embedded stdlib task is the offline default).

python -m llmjax.main --config=configs/transformer_base.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="encdec", task="seq2seq")
    c.model.num_layers = 6
    c.model.num_decoder_layers = 6
    c.model.d_model = 512
    c.model.num_heads = 8
    c.model.mlp_dim = 2048
    c.model.ffn = "relu"
    c.model.position = "sinusoidal"
    c.model.norm_position = "post"
    c.model.dropout = 0.1
    c.model.share_embeddings = True
    c.model.tie_embeddings = True
    c.model.scale_embeddings = True
    c.model.init_std = 512 ** -0.5  # N(0, d^-1/2) tables, scaled by sqrt(d) on the way in
    c.task.dataset = "stdlib_docstrings"
    c.task.target_len = 64
    c.task.label_smoothing = 0.1
    c.task.beam_size = 4
    c.task.alpha = 0.6
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 32000
    c.data.seq_len = 256
    c.train.num_steps = 100_000  # the paper's base model
    c.train.batch_size = 128  # rows of up to 256 source + 64 target tokens (the paper: ~25k tokens per side)
    c.train.eval_every = 5000
    c.train.dtype = "bfloat16"
    c.optim.name = "adamw"
    c.optim.lr = 512 ** -0.5 * 4000 ** -0.5  # the paper's peak: d^-0.5 * warmup^-0.5
    c.optim.schedule = "rsqrt"
    c.optim.warmup_steps = 4000
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-9
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 0.0
    c.checkpoint.every_steps = 5000
    return c
