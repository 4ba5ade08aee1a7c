"""Word2Vec (skip-gram, negative sampling) over the words of the embedded stdlib corpus, with
gensim's defaults: dim 100, window 5, 5 negatives, min_count 5, subsampling t=1e-4, lr decaying
linearly to 1e-4 of its peak (word2vec.c's floor); Adam at 0.1 rather than word2vec.c's SGD,
which batches do not survive (llmjax.tasks.word2vec says why, with the measurements).

Words, not pieces: data.tokenizer="word" counts the whole train split (spm_train_chars past its
size: 3.24M words and document ends) and keeps the 32,292 words of at least 5 occurrences
(vocab_size counts the 6 specials too); min_count drops any rarer word, as gensim does. 1,000
updates of 16,384 corpus words: 5 epochs. The end of the run prints nearest neighbours and saves
workdir/embeddings.npy (llmjax.data.embeddings_file). data.tokenizer="sentencepiece" trains
vectors over the pieces instead, which model.embed_init can load into GPT, BERT or the LSTM
(docs/features.md). experiments/bench_word2vec.py sets this beside gensim on the same corpus.

python -m llmjax.main --config=configs/word2vec_stdlib.py
"""
from llmjax.experiment import base_config


def get_config():
    c = base_config("word2vec", "word2vec")
    c.model.architecture = "skipgram"
    c.model.dim = 100
    c.model.window = 5
    c.model.negatives = 5
    c.model.negative_group = 1  # each row its own negatives (gensim's); 64: faster, not gensim's estimator
    c.task.sample = 1e-4
    c.task.min_count = 5
    c.data.dataset = "stdlib"
    c.data.tokenizer = "word"
    c.data.vocab_size = 32_298  # the words of at least min_count occurrences, + 6 specials
    c.data.spm_train_chars = 1_000_000_000  # the whole train split: the counts min_count reads
    c.train.batch_size = 16_384  # corpus tokens per update (-> about 60k rows of pairs)
    c.train.num_steps = 1_000
    c.train.eval_every = 500
    c.train.log_every = 50
    c.train.num_samples = 0
    c.data.eval_tokens = 500_000
    c.optim.name = "adamw"
    c.optim.b2 = 0.999
    c.optim.lr = 0.1
    c.optim.schedule = "linear"
    c.optim.min_lr_ratio = 1e-4
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 0.0
    c.checkpoint.every_steps = 500
    return c
