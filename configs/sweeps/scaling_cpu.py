"""The CPU scaling study (experiments/README.md, "A scaling study on a CPU"): GPT on the
embedded stdlib corpus (byte tokenizer, 128-token rows, batch 16), an isoFLOP design of 4
compute budgets (2x apart) x 5 model sizes from 10k to 270k parameters, each budget's sizes
around its best one, every run training for its budget (train.budget_flops, the task's
exact FLOP count) with a cosine schedule over the steps the budget buys. The largest budget is
held out: the fit on the other 15 points predicts its 5 losses. 80 runs (20 points x 4
learning rates): 43 minutes of runs on a 2-core CPU (measured: 2,608 s, one at a time, the
machine shared), about 11 minutes per learning rate.

python -m llmjax.sweep --config=configs/sweeps/scaling_cpu.py

Learning rate: tuned per point on a small grid, 0.5x, 1x, 2x and 4x a width heuristic
3e-3 * sqrt(64 / d_model); the fits take each point's best run (analysis.tuned = optim.lr). AdamW with beta2 = 0.99 at this small batch (Porian et al. 2024).
"""
import ml_collections

# (num_layers, d_model): parameters about 1.6-2x a rung apart; heads of 16 dimensions (or one).
LADDER = [(1, 16), (1, 24), (1, 32), (2, 32), (2, 48), (2, 64), (3, 80)]
# FLOPs -> the ladder's rungs it trains: five sizes around its best one, which moves up about one
# rung per 4x compute (a first design moving one rung per 2x, from 27k parameters, put every
# budget's best run at its smallest size: no isoFLOP minimum).
BUDGETS = {2.5e11: range(0, 5), 5e11: range(0, 5), 1e12: range(1, 6), 2e12: range(2, 7)}


LR_FACTORS = (1.0, 0.5, 2.0, 4.0)  # the learning-rate grid around the width heuristic, per point


def _point(layers: int, width: int, budget: float, factor: float) -> dict:
    return {"model.num_layers": layers, "model.d_model": width, "model.mlp_dim": 4 * width,
            "model.num_heads": max(1, width // 16),
            "optim.lr": round(factor * 3e-3 * (64 / width) ** 0.5, 6), "train.budget_flops": budget}


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "scaling_cpu"
    c.base = "configs/gpt_small.py"
    c.set = {
        "model": {"position": "learned", "dropout": 0.0},
        "data": {"tokenizer": "byte", "seq_len": 128},
        "train": {"batch_size": 16, "eval_every": 500, "eval_steps": 20, "log_every": 50,
                  "num_samples": 0, "progress": False},
        "optim": {"warmup_steps": 15, "b2": 0.99, "schedule": "cosine"},
        "checkpoint": {"every_steps": 1000},
    }
    c.axes = [[_point(*LADDER[i], budget, f) for budget, rungs in BUDGETS.items() for i in rungs
               for f in LR_FACTORS]]
    c.analysis = {"params": "params", "compute": "flops", "holdout": "largest_compute", "tuned": "optim.lr"}
    return c
