"""The coordinate check (Tensor Programs V, fig. 5) of llmjax.scaling.coord_check: mean
|activation| of a GPT's embeddings, attention logits, block outputs and logits at widths 32..512
(16x, heads fixed) over the first AdamW steps on stdlib text, for the standard parametrization
and µP. Prints each quantity's spread over widths (max / min) at the last step and the values at
the narrowest and widest model; --plot=FILE draws the grid (one row per parametrization, one
panel per quantity, x = log2 width, one line per step).

  python experiments/coord_check.py --plot=coord_check.png
"""
from __future__ import annotations

import time

from absl import app, flags

from llmjax.scaling import coord_check as cc

_WIDTHS = flags.DEFINE_list("widths", ["32", "64", "128", "256", "512"], "Model widths (d_model).")
_STEPS = flags.DEFINE_integer("steps", 5, "AdamW steps (the first row is at init).")
_LR = flags.DEFINE_float("lr", 1e-2, "Learning rate (constant, no warm-up, no decay, no clipping).")
_LAYERS = flags.DEFINE_integer("num_layers", 2, "Transformer layers.")
_PLOT = flags.DEFINE_string("plot", "", "Also draw the grid to this PNG file.")
_TITLE = flags.DEFINE_string("title", "", "Added to the plot's title (say the machine).")


def main(argv: list[str]) -> None:
    del argv
    t0 = time.time()
    widths = [int(w) for w in _WIDTHS.value]
    check = cc.coord_check(widths, steps=_STEPS.value, lr=_LR.value, num_layers=_LAYERS.value)
    lo, hi = check.widths[0], check.widths[-1]
    print(f"mean |activation| at step {_STEPS.value - 1} (after {_STEPS.value - 1} updates), widths "
          f"{lo}..{hi}; spread = max / min over widths")
    print(f"{'quantity':>14} {'param':>9} {'spread':>8} {f'w={lo}':>9} {f'w={hi}':>9}")
    for q in check.values["standard"]:
        for p in check.values:
            last_W = check.values[p][q][-1]
            print(f"{q:>14} {p:>9} {check.spread(p, q):8.2f} {last_W[0]:9.4f} {last_W[-1]:9.4f}")
    if _PLOT.value:
        title = f"coordinate check, lr {_LR.value:g}, {_LAYERS.value} layers"
        cc.plot(check, _PLOT.value, f"{title} ({_TITLE.value})" if _TITLE.value else title)
        print(f"wrote {_PLOT.value}")
    print(f"{time.time() - t0:.0f}s")


if __name__ == "__main__":
    app.run(main)
