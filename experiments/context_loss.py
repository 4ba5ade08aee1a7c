"""Loss by context position for several LM runs (Kaplan et al. 2020, fig. 7: Transformers keep
improving with context, LSTMs plateau after ~100 tokens).

Every LM run writes workdir/eval/per_position_loss.json at each eval: the eval split's mean
loss of the token predicted at each position of a row, i.e. with that many tokens of context
(-1). This prints them side by side at log-spaced positions, with each run's parameters and
FLOPs per token, and with --plot=FILE draws the curves (matplotlib, imported only then).

  python experiments/context_loss.py --runs=runs/gpt_small,runs/lstm_small --plot=context.png
"""
from __future__ import annotations

import json
import os

from absl import app, flags

_RUNS = flags.DEFINE_list("runs", ["runs/gpt_small", "runs/lstm_small"], "LM workdirs to compare.")
_PLOT = flags.DEFINE_string("plot", "", "Also draw the curves to this image file.")


def load(workdir: str) -> tuple[list[float | None], int, str]:
    """(loss by position, the eval step, a one-line description of the model) of a run."""
    path = os.path.join(workdir, "eval", "per_position_loss.json")
    if not os.path.exists(path):
        raise SystemExit(f"context_loss: {path} is missing: train or evaluate the run first (any LM run "
                         "writes it at each eval)")
    with open(path) as f:
        record = json.load(f)
    with open(os.path.join(workdir, "model.json")) as f:
        model = json.load(f)
    return record["per_position_loss"], record["step"], model["name"]


def positions(length: int) -> list[int]:
    """1, 2, 4, ... and the last position (1-based: the number of tokens seen)."""
    out, p = [], 1
    while p < length:
        out.append(p)
        p *= 2
    return out + [length]


def main(argv: list[str]) -> None:
    del argv
    runs = {w: load(w) for w in _RUNS.value}
    length = max(len(curve) for curve, _, _ in runs.values())
    names = [f"{os.path.basename(w.rstrip('/'))} ({name}, step {step})" for w, (_, step, name) in runs.items()]
    print("eval loss (nats/token) of the token predicted with n tokens of context")
    print(f"{'n':>6}  " + "  ".join(f"{n:>28}" for n in names))
    for n in positions(length):
        cells = []
        for curve, _, _ in runs.values():
            value = curve[n - 1] if n <= len(curve) else None
            cells.append(f"{value:>28.4f}" if value is not None else f"{'-':>28}")
        print(f"{n:>6}  " + "  ".join(cells))
    if _PLOT.value:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for label, (curve, _, _) in zip(names, runs.values()):
            points = [(i + 1, v) for i, v in enumerate(curve) if v is not None]
            ax.plot(*zip(*points), label=label)
        ax.set_xscale("log")
        ax.set_xlabel("token position in context")
        ax.set_ylabel("eval loss (nats/token)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(_PLOT.value, dpi=120)
        print(f"plot: {_PLOT.value}")


if __name__ == "__main__":
    app.run(main)
