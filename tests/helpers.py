"""Shared test fixtures: a small real corpus and a tiny config."""
import os
import sysconfig

from llmjax.experiment import base_config


def one_device_xla_flags() -> str:
    """XLA_FLAGS for a subprocess that runs on one CPU device, as a user's run does: the tests'
    flags (tests/conftest.py) without its eight host devices."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                    if not f.startswith("--xla_force_host_platform_device_count"))


def write_corpus(directory, num_files: int = 12, max_chars: int = 20_000) -> str:
    """Copy a few standard-library sources (real text, no download); returns a text: spec."""
    src = sysconfig.get_paths()["stdlib"]
    names = sorted(n for n in os.listdir(src) if n.endswith(".py"))[:num_files]
    os.makedirs(directory, exist_ok=True)
    for n in names:
        with open(os.path.join(src, n), encoding="utf-8", errors="replace") as f:
            text = f.read()[:max_chars]
        with open(os.path.join(directory, n + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
    return f"text:{directory}/*.txt"


def tiny_config(dataset: str, model: str = "gpt", task: str = "lm", **overrides):
    c = base_config(model, task)
    for key, value in (("num_layers", 2), ("d_model", 32), ("num_heads", 4), ("mlp_dim", 64)):
        if key in c.model:  # the family's size keys (an LSTM has no heads or MLP)
            c.model[key] = value
    c.data.dataset, c.data.tokenizer, c.data.seq_len = dataset, "byte", 32
    c.data.val_fraction = 0.2
    c.train.num_steps, c.train.batch_size = 12, 8
    c.train.eval_every, c.train.eval_steps, c.train.log_every = 6, 2, 1
    c.train.num_samples, c.train.progress = 0, False
    c.optim.warmup_steps, c.optim.lr = 2, 3e-3
    c.checkpoint.every_steps, c.checkpoint.keep = 6, 5
    for key, value in overrides.items():
        group, leaf = key.split("__")
        c[group][leaf] = value
    return c


def truncate_checkpoint(step_dir) -> None:
    """A checkpoint whose saved tree reads but whose arrays do not (a disk fault, a copy cut
    short): every array data file under step_dir/state is cut to half its size."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        if os.path.basename(root) == "d":
            for name in files:
                path = os.path.join(root, name)
                os.truncate(path, os.path.getsize(path) // 2)
