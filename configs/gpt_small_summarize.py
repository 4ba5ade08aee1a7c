"""Fine-tune gpt_small on the embedded seq2seq task (a standard-library function's code to the first
sentence of its docstring) as prompt -> completion: each row reads source + [SEP] + target + EOS,
the loss is on target + EOS only, and the eval decodes source + [SEP] with the encoder-decoder's
beam search and scores it with the same BLEU, chrF and ROUGE beside the same baselines (copy, the
translation memory, the most frequent target); configs/encdec_small.py is the encoder-decoder on
the same pairs and split. Rows are 128 tokens: a source keeps its first 103 (128 - 24 target
tokens - [SEP]; encdec_small reads 64).

Pretrain first: configs/gpt_small.py with rotary positions and this task's eval files held out
of its train split (data.holdout; the same run configs/gpt_small_qa.py starts from), then
fine-tune:

python -m llmjax.main --config=configs/gpt_small.py --workdir=runs/gpt_rope_docs_holdout \
    --config.model.position=rope --config.data.holdout=stdlib_docstring_qa,stdlib_docstrings \
    --config.data.seq_len=256 --config.train.batch_size=8
python -m llmjax.main --config=configs/gpt_small_summarize.py
python -m llmjax.main --config=configs/gpt_small_summarize.py --config.init_from= --workdir=runs/gpt_summarize_scratch   # from scratch

Measured (2-core CPU, experiments/README.md): BLEU 1.43, chrF 15.06, ROUGE-1/2/L 15.84/3.36/15.06,
above the translation memory on ROUGE, below it on BLEU (1.61) and below it and copy on chrF.
"""
from llmjax.experiment import base_config, sibling_config


def get_config():
    c = base_config(model="gpt", task="seq2seq")
    c.init_from = "runs/gpt_rope_docs_holdout"  # the pretraining run's workdir (its newest checkpoint and tokenizer)
    c.model = sibling_config(__file__, "gpt_small.py").model  # the pretrained model's shape and function
    c.model.position = "rope"  # as the pretraining run (see above)
    c.model.dropout = 0.1
    c.task.dataset = "stdlib_docstrings"
    c.task.target_len = 24  # encdec_small's, and its decoding settings below
    c.task.label_smoothing = 0.1
    c.task.decode_examples = 200
    c.task.beam_size = 4
    c.task.alpha = 0.6
    c.task.no_repeat_ngram = 3
    c.task.length_reward = 0.4
    c.data.tokenizer = "sentencepiece"
    c.data.vocab_size = 4096
    c.data.seq_len = 128  # a row: prompt (source + [SEP]) and completion (target + EOS)
    c.data.val_fraction = 0.1  # by file group: encdec_small's 480 eval pairs
    c.train.num_steps = 1200
    c.train.batch_size = 16
    c.train.eval_every = 400
    c.train.eval_steps = 0
    c.train.log_every = 10
    c.optim.lr = 1e-3
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 0.0
    c.optim.warmup_steps = 30
    c.optim.weight_decay = 0.01
    c.checkpoint.every_steps = 400
    return c
