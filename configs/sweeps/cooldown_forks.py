"""Cooldown forks (Hagele et al. 2024) on the embedded stdlib corpus: 2 GPT sizes, each one
constant-LR parent with 1-sqrt cooldowns forked at 10, 20 and 40 tokens per parameter (byte
tokenizer, 64-token rows). experiments/cooldown_forks.py runs it and the separate cosine runs of
the same lengths it is compared with: about 7.5 minutes in all on a 2-core CPU (measured).

python -m llmjax.sweep --config=configs/sweeps/cooldown_forks.py [--list] [--commands]

The `forks` key (read by llmjax.scaling.forks): one of tokens_per_param | tokens | steps (the
budgets), cooldown_fraction (of each fork's total steps) and cooldown_shape (linear | 1-sqrt).
Each run of the axes becomes a parent trained at constant LR to its last fork step; each fork
is the run "PARENT,fork=T" in its own workdir. Rows of results.csv with fork_of are forks.
"""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "cooldown_forks"
    c.base = "configs/gpt_small.py"
    c.set = {
        "data": {"tokenizer": "byte", "seq_len": 64},
        "train": {"batch_size": 16, "eval_every": 100000, "eval_steps": 20, "log_every": 50,
                  "num_samples": 0, "progress": False},
        "optim": {"warmup_steps": 50, "lr": 0.01},  # gpt_small's 2e-3 is too low for these sizes
        "checkpoint": {"every_steps": 500},
    }
    c.axes = [
        [{"model.d_model": 32, "model.mlp_dim": 128, "model.num_layers": 1},
         {"model.d_model": 48, "model.mlp_dim": 192, "model.num_layers": 2}],
    ]
    c.forks = {"tokens_per_param": [10, 20, 40], "cooldown_fraction": 0.2, "cooldown_shape": "1-sqrt"}
    return c
