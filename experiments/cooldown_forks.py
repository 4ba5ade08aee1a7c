"""Cooldown forks land on the losses of separate cosine runs of the same length (Hagele et al.
2024, the diagonal plot), for a fraction of the compute.

Runs the sweep configs/sweeps/cooldown_forks.py through the sweep runner (one constant-LR parent
per model size, 1-sqrt cooldowns forked from it at 10, 20 and 40 tokens per parameter), then,
for every fork, a separate cosine run of the same total steps (same config, schedule cosine, the
same floor min_lr_ratio), also through the runner. Prints the table (size, parameters, tokens,
cosine loss, fork loss, difference) and the compute of both ways, and draws fork loss against
cosine loss with the y = x line to OUT/diagonal.png. Finished runs are skipped, so a second
invocation only re-reads the results.

  python experiments/cooldown_forks.py [--out=runs/experiments/cooldown_forks]
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from absl import app, flags

_OUT = flags.DEFINE_string("out", "runs/experiments/cooldown_forks", "Directory of both sweeps and the plot.")
_CONFIG = flags.DEFINE_string("config", "configs/sweeps/cooldown_forks.py", "The forks sweep config.")
# Keys only a fork has: its cosine twin leaves them out.
_FORK_ONLY = ("fork_from", "optim.decay_fraction", "optim.cooldown_shape")


def _check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("cooldown_forks: the plot needs matplotlib: pip install matplotlib (or the "
                         "'plots' extra: pip install -e .[plots])")


def _load_sweep(path: str):
    spec = importlib.util.spec_from_file_location("cooldown_forks_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _run_sweeps(out: str):
    """Forks through `python -m llmjax.sweep`, then their cosine twins; both results tables."""
    from llmjax.scaling import forks, results
    from llmjax.scaling import sweep as sweep_lib

    fork_dir, cosine_dir = os.path.join(out, "forks"), os.path.join(out, "cosine")
    code = subprocess.call([sys.executable, "-m", "llmjax.sweep", f"--config={_CONFIG.value}",
                            f"--sweep_dir={fork_dir}"])
    if code:
        raise SystemExit(f"cooldown_forks: the forks sweep failed (exit code {code}): see {fork_dir}/*/run.log")
    config = _load_sweep(_CONFIG.value)
    plan = forks.plan(config, sweep_lib.expand(config), fork_dir)
    twins = [sweep_lib.Run(f"{f.fork_of},cosine={f.overrides['train.num_steps']}", f.base,
                           {**{k: v for k, v in f.overrides.items() if k not in _FORK_ONLY},
                            "optim.schedule": "cosine"}, f.axis_values) for f in plan.forks]
    records = sweep_lib.run_all(twins, cosine_dir, log=lambda msg: print(msg, flush=True))
    if any(r["returncode"] for r in records.values()):
        raise SystemExit(f"cooldown_forks: a cosine run failed: see {cosine_dir}/*/run.log")
    return plan, results.write(plan.runs, fork_dir), results.write(twins, cosine_dir)


def _table(plan, fork_rows, cosine_rows) -> list[tuple]:
    """(parent, params, tokens, cosine loss, fork loss) per fork, in plan order."""
    by_name = {r["name"]: r for r in fork_rows}
    out = []
    for f, twin in zip(plan.forks, cosine_rows):
        row = by_name[f.name]
        out.append((f.fork_of, row["params"], row["tokens"], twin["final_eval_loss"], row["final_eval_loss"]))
    return out


def _compute(plan, fork_rows, cosine_rows) -> tuple[float, float, int, int]:
    """(FLOPs of parents + forks' own steps, FLOPs of the cosine runs, and the same in steps)."""
    by_name = {r["name"]: r for r in fork_rows}
    parents = [by_name[p.name] for p, _ in plan.parents]
    own = [by_name[f.name] for f in plan.forks]
    flops = sum(r["flops"] for r in parents) + sum(r["flops_fork"] for r in own)
    steps = sum(r["step"] for r in parents) + sum(r["step"] - r["fork_step"] for r in own)
    return flops, sum(r["flops"] for r in cosine_rows), steps, sum(r["step"] for r in cosine_rows)


def _plot(table: list[tuple], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for parent in dict.fromkeys(t[0] for t in table):
        points = [t for t in table if t[0] == parent]
        ax.plot([t[3] for t in points], [t[4] for t in points], "o", label=f"{parent} ({points[0][1]:,} params)")
    losses = [v for t in table for v in t[3:5]]
    lo, hi = min(losses) - 0.05, max(losses) + 0.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="cosine run: final eval loss (nats/token)",
           ylabel="cooldown fork: final eval loss (nats/token)",
           title="Cooldown forks vs cosine runs of the same length\n2-core CPU, experiments/cooldown_forks.py")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> None:
    del argv
    _check_matplotlib()
    out = _OUT.value
    plan, fork_rows, cosine_rows = _run_sweeps(out)
    table = _table(plan, fork_rows, cosine_rows)
    print(f"\n{'size':<36} {'params':>8} {'tokens':>10} {'cosine':>8} {'fork':>8} {'diff':>8} {'%':>7}")
    for parent, params, tokens, cosine, fork in table:
        print(f"{parent:<36} {params:>8,} {tokens:>10,} {cosine:>8.4f} {fork:>8.4f} {fork - cosine:>+8.4f} "
              f"{100 * (fork - cosine) / cosine:>+6.2f}%")
    f_flops, c_flops, f_steps, c_steps = _compute(plan, fork_rows, cosine_rows)
    print(f"\ncompute: parents + forks {f_flops:.3g} FLOPs ({f_steps:,} steps); separate cosine runs "
          f"{c_flops:.3g} FLOPs ({c_steps:,} steps): forks save {100 * (1 - f_flops / c_flops):.0f}% of the FLOPs")
    path = os.path.join(out, "diagonal.png")
    _plot(table, path)
    print(f"plot: {path}")


if __name__ == "__main__":
    app.run(main)
