"""µP learning-rate transfer (Tensor Programs V, fig. 1): parametrization x width x learning rate
for a 2-layer GPT on the embedded stdlib corpus (byte tokenizer, 64-token rows, 200 steps of 8
rows), 30 runs: 12 min 43 s on a 2-core CPU, 1 at a time (measured). µP's base width is the
narrowest model, where both parametrizations are the same (but for µP's zero readout).
experiments/lr_transfer.py reads the results table and plots loss against lr per width.

python -m llmjax.sweep --config=configs/sweeps/mup_lr.py
python experiments/lr_transfer.py --sweep_dir=runs/sweeps/mup_lr
"""
import ml_collections

WIDTHS = (32, 128, 256)
LRS = tuple(2.0 ** e for e in (-12, -10, -8, -6, -4))


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "mup_lr"
    c.base = "configs/gpt_small.py"
    c.set = {
        "model": {"num_layers": 2, "num_heads": 4, "tie_embeddings": False, "base_width": WIDTHS[0]},
        "data": {"tokenizer": "byte", "seq_len": 64, "max_train_chars": 2_000_000},
        "train": {"num_steps": 200, "batch_size": 8, "eval_every": 200, "eval_steps": 20,
                  "log_every": 50, "num_samples": 0, "progress": False},
        "optim": {"warmup_steps": 20},
        "checkpoint": {"every_steps": 200},
    }
    c.axes = [
        {"model.parametrization": ["standard", "mup"]},
        [{"model.d_model": w, "model.mlp_dim": 4 * w} for w in WIDTHS],
        {"optim.lr": list(LRS)},
    ]
    return c
