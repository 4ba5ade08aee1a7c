"""A tiny isoFLOP sweep of GPT on the embedded stdlib corpus (byte tokenizer, 64-token rows):
3 model sizes x 3 compute budgets, each run training for its budget (train.budget_flops), to try
the sweep machinery end to end: runs, results table, fits (Kaplan, Approaches 2 and 3, the
largest budget held out and predicted) and plots. 2 min 20 s on a 2-core CPU, 1 at a time
(measured 2026-11-24). Its sizes are all past the optimum of these budgets (smaller wins at
each), so Approach 2 is skipped with its reason; configs/sweeps/scaling_cpu.py brackets it.

python -m llmjax.sweep --config=configs/sweeps/tiny.py [--parallel=2] [--list] [--commands]

The sweep config format (read by llmjax.scaling.sweep):
  name   the sweep's name; its directory is runs/sweeps/<name> unless --sweep_dir says otherwise
  base   the run config file every run starts from (any file in configs/)
  set    nested overrides for every run, as in a run config: {"train": {"num_steps": 1000}}
  axes   a list of axes, the runs being their cartesian product (the last axis varies fastest):
           {"model.num_layers": [1, 2]}                       one key and its values
           [{"model.d_model": 32, "model.mlp_dim": 128}, ...]  override dicts, keys moving together
         the key "config" in an override dict swaps the base file for that run, e.g. an
         architecture axis [{"config": "configs/gpt_small.py"}, {"config": "configs/lstm_small.py"}]
  analysis  (optional) the fits' columns, see llmjax.scaling.analysis.AnalysisConfig:
         {"params": "params" | "params_non_embedding", "compute": "flops" | "6ND",
          "loss": "final_eval_loss", "holdout": "largest_compute" | "largest_model" | "none"}
Run names join the axis values ("d_model=32,mlp_dim=128,budget_flops=1e+11"); each run is a
normal llmjax.main run in <sweep dir>/<run name>; <sweep dir> gets results.csv (one row per
run), fits.json and plots/*.png.
Sweep keys are overridable on the command line too: --config.set.train.num_steps=100.
"""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "tiny"
    c.base = "configs/gpt_small.py"
    c.set = {
        "data": {"tokenizer": "byte", "seq_len": 64},
        "model": {"num_layers": 2},
        "train": {"batch_size": 16, "eval_every": 100, "eval_steps": 10,
                  "log_every": 50, "num_samples": 0, "progress": False},
        "optim": {"warmup_steps": 20},
        "checkpoint": {"every_steps": 500},
    }
    c.axes = [
        [{"model.d_model": 32, "model.mlp_dim": 128, "model.num_heads": 2},
         {"model.d_model": 64, "model.mlp_dim": 256, "model.num_heads": 2},
         {"model.d_model": 128, "model.mlp_dim": 512, "model.num_heads": 4}],
        {"train.budget_flops": [1e11, 3e11, 1e12]},
    ]
    c.analysis = {"params": "params", "compute": "flops", "loss": "final_eval_loss",
                  "holdout": "largest_compute"}
    return c
