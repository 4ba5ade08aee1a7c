"""A small encoder-decoder Transformer on the embedded seq2seq task: a standard-library
function's code to the first sentence of its docstring. About 7 minutes on a 2-core CPU; the
eval reports BLEU, chrF and ROUGE of beam-search decodes beside three baselines (copying the
source, the translation memory and the most frequent target).

Choices measured on this task and on a synthetic one (docs/encdec_experiments.md): copy attention
(a summary's content words are mostly the function's own names), snake_case names split into
words (so a name's words are the pieces prose uses), decoder-input word dropout (4,916 train
pairs are otherwise memorised through the target prefix, and the decodes ignore the source),
an 8,192-piece vocabulary, init_std d_model^-1/2 (GPT-2's 0.02 leaves cross-attention uniform
over 64 source tokens), 64 source tokens (the signature and first lines), no repeated trigram in
the beam, and a beam length reward of 0.4 per token against too-short decodes, chosen on a dev
split carved from the train files, never on the eval split (experiments/encdec_dev_decoding.py).

python -m llmjax.main --config=configs/encdec_small.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config(model="encdec", task="seq2seq")
    c.model.num_layers = 2  # encoder layers
    c.model.num_decoder_layers = 2
    c.model.d_model = 256
    c.model.num_heads = 4
    c.model.mlp_dim = 1024
    c.model.position = "learned"
    c.model.norm_position = "pre"
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.1
    c.model.init_std = 256 ** -0.5
    c.model.copy_attention = True
    c.task.dataset = "stdlib_docstrings"
    c.task.split_identifiers = True
    c.task.decoder_input_dropout = 0.3
    c.task.target_len = 24
    c.task.label_smoothing = 0.1
    c.task.decode_examples = 200
    c.task.beam_size = 4
    c.task.alpha = 0.6
    c.task.no_repeat_ngram = 3
    c.task.length_reward = 0.4  # chosen on a dev split of train files (experiments/encdec_dev_decoding.py)
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 8192
    c.data.seq_len = 64  # source tokens per row
    c.data.val_fraction = 0.1  # by file group: 34 of the stdlib's files, 480 eval pairs
    c.train.num_steps = 1000
    c.train.batch_size = 32
    c.train.eval_every = 500
    c.train.eval_steps = 0
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 80
    c.optim.b2 = 0.98
    c.checkpoint.every_steps = 500
    return c
