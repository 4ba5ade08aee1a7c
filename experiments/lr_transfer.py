"""Learning-rate transfer across width (Tensor Programs V, fig. 1): from the results table of
configs/sweeps/mup_lr.py, the best learning rate and its eval loss for each parametrization and
width, and with --plot=FILE the loss against log2 lr, one line per width, one panel per
parametrization (matplotlib, imported only then). Under µP the best lr stays put as the model
widens; under the standard parametrization it moves down. A run with no final loss (diverged)
shows as "-" and leaves a gap in its line.

  python -m llmjax.sweep --config=configs/sweeps/mup_lr.py
  python experiments/lr_transfer.py --sweep_dir=runs/sweeps/mup_lr --plot=lr_transfer.png
"""
from __future__ import annotations

import csv
import math
import os

from absl import app, flags

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", "runs/sweeps/mup_lr", "The sweep's directory (holds results.csv).")
_PLOT = flags.DEFINE_string("plot", "", "Also draw loss against lr to this image file.")
_TITLE = flags.DEFINE_string("title", "", "The plot's title (say the machine and the run).")

Table = dict[str, dict[int, dict[float, float]]]  # parametrization -> width -> lr -> final eval loss


def load(sweep_dir: str) -> Table:
    """The sweep's final eval losses (nan where a run has none: diverged or unfinished)."""
    path = os.path.join(sweep_dir, "results.csv")
    if not os.path.exists(path):
        raise SystemExit(f"lr_transfer: {path} is missing: run python -m llmjax.sweep "
                         "--config=configs/sweeps/mup_lr.py first")
    table: Table = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            p, width, lr = row["model.parametrization"], int(row["model.d_model"]), float(row["optim.lr"])
            loss = float(row["final_eval_loss"]) if row.get("final_eval_loss") else math.nan
            table.setdefault(p, {}).setdefault(width, {})[lr] = loss
    return table


def best(losses: dict[float, float]) -> tuple[float, float]:
    """(lr, loss) of the lowest finite loss; (nan, nan) when every run diverged."""
    finite = [(loss, lr) for lr, loss in losses.items() if math.isfinite(loss)]
    return (min(finite)[1], min(finite)[0]) if finite else (math.nan, math.nan)


def report(table: Table) -> str:
    """One line per parametrization and width: the best lr, its loss, the loss at every lr."""
    lrs = sorted({lr for widths in table.values() for losses in widths.values() for lr in losses})
    head = f"{'param':>9} {'width':>5} {'best lr':>9} {'loss':>6}  " + " ".join(f"{f'2^{math.log2(lr):g}':>7}" for lr in lrs)
    lines = [head]
    for p in sorted(table, key=lambda p: p != "standard"):
        for width in sorted(table[p]):
            lr, loss = best(table[p][width])
            cells = " ".join(f"{table[p][width].get(x, math.nan):7.3f}".replace("    nan", "      -") for x in lrs)
            lines.append(f"{p:>9} {width:>5} {lr:9.2e} {loss:6.3f}  {cells}")
    return "\n".join(lines)


def plot(table: Table, path: str, title: str = "") -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("lr_transfer: --plot needs matplotlib: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted(table, key=lambda p: p != "standard")
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.4), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], params):
        for width in sorted(table[p]):
            lrs = sorted(table[p][width])
            ax.plot([math.log2(lr) for lr in lrs], [table[p][width][lr] for lr in lrs], marker="o",
                    label=f"width {width}")
        ax.set_title(p)
        ax.set_xlabel("log2 learning rate")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("final eval loss (nats/token)")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    table = load(_SWEEP_DIR.value)
    print(report(table))
    if _PLOT.value:
        plot(table, _PLOT.value, _TITLE.value)
        print(f"wrote {_PLOT.value}")


if __name__ == "__main__":
    app.run(main)
