"""The CPU scaling study (experiments/README.md, "A scaling study on a CPU"): GPT on the
embedded stdlib corpus (byte tokenizer, 128-token rows, batch 16), an isoFLOP design of 4
compute budgets (2x apart) x 5 model sizes from 23k to 1.2M parameters, each budget's sizes
shifted one rung up the ladder from the previous budget's, every run training for its budget (train.budget_flops, the task's
exact FLOP count) with a cosine schedule over the steps the budget buys. The largest budget is
held out: the fit on the other 15 runs predicts its 5 losses. About 25 minutes on a 2-core CPU.

python -m llmjax.sweep --config=configs/sweeps/scaling_cpu.py

Learning rate: 3e-3 * sqrt(64 / d_model), a width heuristic, not tuned per size; AdamW with
beta2 = 0.99 at this small batch (Porian et al. 2024).
"""
import ml_collections

# (num_layers, d_model): parameters grow about 2x a rung; heads of 16 dimensions.
LADDER = [(1, 32), (2, 32), (2, 48), (2, 64), (3, 80), (3, 112), (4, 128), (4, 160)]
BUDGETS = [2.5e11, 5e11, 1e12, 2e12]  # FLOPs; budget k trains rungs k..k+4


def _point(layers: int, width: int, budget: float) -> dict:
    return {"model.num_layers": layers, "model.d_model": width, "model.mlp_dim": 4 * width,
            "model.num_heads": width // 16, "optim.lr": round(3e-3 * (64 / width) ** 0.5, 6),
            "train.budget_flops": budget}


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
    c.axes = [[_point(*LADDER[k + i], budget) for k, budget in enumerate(BUDGETS) for i in range(5)]]
    c.analysis = {"params": "params", "compute": "flops", "holdout": "largest_compute"}
    return c
