"""A sweep's plots (matplotlib PNG, in SWEEPDIR/plots/), drawn from its results table, its
runs' metrics and its fits (llmjax.scaling.analysis):

  loss_vs_tokens.png   each run's eval loss against tokens seen, coloured by model size
  isoflop.png          loss against N for each compute budget, its parabola and minimum
  frontier.png         loss against compute with the frontier's L(C); N*(C) from Approaches 2 and 3
  residuals.png        Approach 3's relative residuals against compute, and the held-out
                       predictions with their intervals beside the measured losses
  families.png         with several model families (Transformer vs LSTM): loss against compute
                       per family, and the per-position eval loss of each family's best run
                       (lowest final loss; Kaplan et al. 2020, fig. 7)
With several families the fits' plots go to plots/<family>/. A plot whose data the sweep
lacks is not drawn. matplotlib is optional (`pip install
matplotlib`, the "plots" extra) and imported here only.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from llmjax.scaling import analysis, fit
from llmjax.scaling.analysis import AnalysisConfig, Points
from llmjax.scaling.results import read_jsonl

PLOTS_DIR = "plots"


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install matplotlib (or the llmjax[plots] extra)") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, directory: str, name: str) -> str:
    """The figure as a PNG (atomically); log axes get plain numbers for loss and no minor labels."""
    from matplotlib import ticker

    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(ticker.NullFormatter())
        if ax.get_yscale() == "log" and "loss" in ax.get_ylabel():
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.1f"))
    path = os.path.join(directory, name)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)
    return path


def _size_colours(plt, sizes: np.ndarray):
    """A colour per run from log N (viridis), and the mapping for a colour bar."""
    norm = plt.matplotlib.colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.0001))
    return plt.cm.ScalarMappable(norm=norm, cmap="viridis")


def loss_vs_tokens(plt, rows: list[dict[str, Any]], cfg: AnalysisConfig, sweep_dir: str, out: str) -> str | None:
    runs = [r for r in rows if r.get("step") and r.get("tokens") and r.get(cfg.params)]
    if not runs:
        return None
    curves = {r["name"]: [m for m in read_jsonl(os.path.join(sweep_dir, r["name"], "metrics.jsonl"))
                          if m.get("split") == "eval" and "loss" in m] for r in runs}
    runs = [r for r in runs if curves[r["name"]]]
    if not runs:
        return None
    mapper = _size_colours(plt, np.array([r[cfg.params] for r in runs], np.float64))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in runs:
        per_step, evals = r["tokens"] / r["step"], curves[r["name"]]
        ax.plot([m["step"] * per_step for m in evals], [m["loss"] for m in evals], marker=".",
                color=mapper.to_rgba(r[cfg.params]), alpha=0.8)
    ax.set(xscale="log", yscale="log", xlabel="tokens", ylabel="eval loss (nats/token)",
           title="eval loss against tokens, by model size")
    fig.colorbar(mapper, ax=ax, label=f"N ({cfg.params})")
    return _save(fig, out, "loss_vs_tokens.png")


def isoflop(plt, p: Points, fits: dict[str, Any], out: str) -> str | None:
    """Drawn for 2 or more budgets of 3 or more sizes; the minima only where Approach 2 fitted."""
    group = analysis.budgets(p.C)
    shown = [b for b in range(group.max() + 1) if np.unique(p.N[group == b]).size >= 3]
    if len(shown) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colours = plt.cm.plasma(np.linspace(0.0, 0.85, group.max() + 1))
    n_opt = fits["approach2"]["n_opt"]["value"] if "a" in fits["approach2"] else None
    for b in shown:
        n, loss = p.N[group == b], p.loss[group == b]
        ax.scatter(n, loss, color=colours[b], label=f"C = {np.exp(np.log(p.C[group == b]).mean()):.2g}")
        grid = np.linspace(np.log(n.min()), np.log(n.max()), 50)
        centre = np.log(n).mean()
        ax.plot(np.exp(grid), np.polyval(np.polyfit(np.log(n) - centre, loss, 2), grid - centre),
                color=colours[b], alpha=0.6)
        if n_opt is not None:
            ax.axvline(n_opt[b], color=colours[b], linestyle=":", alpha=0.8)
    title = "isoFLOP curves and their minima N*" if n_opt is not None else (
        f"isoFLOP curves (Approach 2 skipped: {fits['approach2']['skipped'][:60]}...)")
    ax.set(xscale="log", xlabel="N (parameters)", ylabel="final eval loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, out, "isoflop.png")


def frontier(plt, p: Points, fits: dict[str, Any], out: str) -> str | None:
    kc, a2, a3 = fits["kaplan_c"], fits["approach2"], fits["approach3"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    front = analysis.frontier(p.C, p.loss)
    left.scatter(p.C, p.loss, color="0.6", s=14, label="runs")
    left.scatter(p.C[front], p.loss[front], color="C0", s=22, label="frontier")
    grid = np.geomspace(p.C.min(), p.C.max() * 4, 60)
    if "alpha" in kc:
        alpha, x_c = kc["alpha"]["value"], kc["x_c"]["value"]
        left.plot(grid, (x_c / grid) ** alpha, color="C0", label=f"L(C) = (C_c/C)^{alpha:.3f}")
    left.set(xscale="log", yscale="log", xlabel="C (training FLOPs)", ylabel="final eval loss",
             title="compute frontier")
    left.legend(fontsize=8)
    drawn = False
    if "a" in a2:
        right.scatter(a2["budgets"], a2["n_opt"]["value"], color="C1", label="isoFLOP minima")
        right.plot(grid, a2["k_n"]["value"] * grid ** a2["a"]["value"], color="C1",
                   label=f"Approach 2: N* ~ C^{a2['a']['value']:.2f}")
        drawn = True
    if "E" in a3:
        n_opt = np.exp(fit.ChinchillaFit._log_n_opt(np.array([a3["params"]]), np.log(grid))[0])
        right.plot(grid, n_opt, color="C2", label=f"Approach 3: N* ~ C^{a3['a_opt']['value']:.2f}")
        drawn = True
    if not drawn and "alpha" not in kc:
        plt.close(fig)
        return None
    right.scatter(p.C, p.N, color="0.6", s=10, label="runs")
    right.set(xscale="log", yscale="log", xlabel="C (training FLOPs)", ylabel="N", title="compute-optimal model size")
    right.legend(fontsize=8)
    return _save(fig, out, "frontier.png")


def residuals(plt, p: Points, fits: dict[str, Any], out: str) -> str | None:
    a3, held = fits["approach3"], fits["heldout"]
    if "E" not in a3 and "runs" not in held:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if "E" in a3:
        ax.scatter(p.C, np.array(a3["predicted"]) / p.loss - 1.0, color="C0", s=16, label="Approach 3, all runs")
    if "runs" in held:
        r = held["runs"]
        meas = np.array([x["measured"] for x in r])
        ax.errorbar([x["C"] for x in r], np.array([x["predicted"] for x in r]) / meas - 1.0,
                    yerr=[(np.array([x["predicted"] for x in r]) - [x["low"] for x in r]) / meas,
                          (np.array([x["high"] for x in r]) - [x["predicted"] for x in r]) / meas],
                    fmt="s", color="C3", capsize=3, label=f"held out ({held['law']} fitted on the rest)")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set(xscale="log", xlabel="C (training FLOPs)", ylabel="predicted / measured - 1",
           title="residuals and the held-out prediction")
    ax.legend(fontsize=8)
    return _save(fig, out, "residuals.png")


def families(plt, rows: list[dict[str, Any]], pts: dict[str, Points], sweep_dir: str, out: str) -> str | None:
    if len(pts) < 2:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (family, p) in enumerate(sorted(pts.items())):
        left.scatter(p.C, p.loss, color=f"C{i}", label=family)
        front = analysis.frontier(p.C, p.loss)
        left.plot(p.C[front], p.loss[front], color=f"C{i}", alpha=0.6)
        best = p.names[int(np.argmin(p.loss))]
        path = os.path.join(sweep_dir, best, "eval", "per_position_loss.json")
        if os.path.exists(path):
            with open(path) as f:
                loss = json.load(f)["per_position_loss"]
            xs = [j + 1 for j, v in enumerate(loss) if v is not None]
            right.plot(xs, [v for v in loss if v is not None], color=f"C{i}", label=f"{family}: {best}")
    left.set(xscale="log", yscale="log", xlabel="C (training FLOPs)", ylabel="final eval loss",
             title="loss against compute, per family")
    right.set(xscale="log", xlabel="context position (tokens)", ylabel="eval loss",
              title="per-position loss of each family's best run")
    left.legend(fontsize=8)
    if right.lines:
        right.legend(fontsize=8)
    return _save(fig, out, "families.png")


def write_all(rows: list[dict[str, Any]], fits: dict[str, Any], cfg: AnalysisConfig, sweep_dir: str) -> list[str]:
    """Every plot the sweep's data allows, as PNGs in SWEEPDIR/plots/; returns their paths."""
    plt = _pyplot()
    out = os.path.join(sweep_dir, PLOTS_DIR)
    os.makedirs(out, exist_ok=True)
    pts = analysis.points(rows, cfg)
    paths = [loss_vs_tokens(plt, rows, cfg, sweep_dir, out), families(plt, rows, pts, sweep_dir, out)]
    for family, p in pts.items():  # the fits' plots, per family in plots/<family>/ when several
        f, where = fits["families"][family], out if len(pts) == 1 else os.path.join(out, family)
        os.makedirs(where, exist_ok=True)
        paths += [isoflop(plt, p, f, where), frontier(plt, p, f, where), residuals(plt, p, f, where)]
    plt.close("all")
    return [p for p in paths if p]
