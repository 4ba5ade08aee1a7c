"""A sweep's scaling laws: the fits of llmjax.scaling.fit on its results table, and the test of
a fit, a held-out prediction. Written to SWEEPDIR/fits.json and summarised in a few lines.

What is fitted (each where the runs allow it; otherwise the reason is recorded, nothing fails):
  kaplan_n      L(N) over the best run at each N (the longest-trained, as Kaplan et al. read it)
  kaplan_d      L(D) over the best run at each D
  kaplan_c      L(C) over the compute frontier (the runs no cheaper run beats)
  approach2     Chinchilla isoFLOP parabolas: runs grouped by compute (a budget_flops axis)
  approach3     L(N, D) = E + A/N^alpha + B/D^beta (Huber on log loss, L-BFGS, bootstrap)
  heldout       the largest compute budget (or the largest model) left out, Approach 3 (or the
                Kaplan law on that axis) fitted on the rest, and each held-out run's loss
                predicted with an interval beside the measured loss
Runs of several model families (a Transformer-vs-LSTM sweep) are fitted per family. A sweep that
tunes a hyperparameter per point (analysis.tuned, e.g. "optim.lr") has only each point's best
run fitted.

The sweep config's `analysis` group chooses the columns (see AnalysisConfig).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable

import numpy as np

from llmjax.config import ConfigError
from llmjax.scaling import fit
from llmjax.scaling.bootstrap import Estimate

FITS_JSON = "fits.json"
PARAM_COLUMNS = ("params", "params_non_embedding")
COMPUTE_COLUMNS = ("flops", "6ND")
HOLDOUTS = ("largest_compute", "largest_model", "none")
BUDGET_DECADES = 0.05  # runs whose compute is this close (log10) form one budget


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """The sweep config's `analysis` group."""
    params: str = "params"  # N: params (every parameter, as Chinchilla) | params_non_embedding (Kaplan)
    compute: str = "flops"  # C: flops (each run's own count, as logged) | 6ND
    loss: str = "final_eval_loss"  # the loss column: final_eval_loss | best_eval_loss
    holdout: str = "largest_compute"  # which runs the extrapolation test predicts
    tuned: str = ""  # a config key tuned within the sweep (e.g. optim.lr): of runs alike but for it, the best is fitted
    num_bootstrap: int = 200  # bootstrap resamples per fit
    seed: int = 0  # of the bootstrap

    @classmethod
    def from_sweep(cls, sweep: Any) -> "AnalysisConfig":
        given = dict(sweep.get("analysis", None) or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(f"sweep analysis.{unknown[0]} is not a key: use {', '.join(sorted(names))}")
        cfg = cls(**given)
        for key, choices in (("params", PARAM_COLUMNS), ("compute", COMPUTE_COLUMNS),
                             ("loss", ("final_eval_loss", "best_eval_loss")), ("holdout", HOLDOUTS)):
            if getattr(cfg, key) not in choices:
                raise ConfigError(f"sweep analysis.{key}={getattr(cfg, key)!r}: must be one of {', '.join(choices)}")
        if cfg.tuned:
            from llmjax.scaling.sweep import expand

            varied = {k for run in expand(sweep) for k in run.axis_values}
            if cfg.tuned not in varied:
                raise ConfigError(f"sweep analysis.tuned={cfg.tuned!r} is not a key the axes vary: name one of "
                                  f"{', '.join(sorted(varied)) or '(none)'}")
        return cfg


@dataclasses.dataclass(frozen=True)
class Points:
    """The finished runs of one model family as arrays, one entry per run."""
    names: list[str]
    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    loss: np.ndarray

    def take(self, keep: np.ndarray) -> "Points":
        return Points([n for n, k in zip(self.names, keep) if k], self.N[keep], self.D[keep],
                      self.C[keep], self.loss[keep])


def _usable(row: dict[str, Any], cfg: AnalysisConfig) -> bool:
    values = [row.get(cfg.params), row.get("tokens"), row.get(cfg.loss)]
    return row.get("status") == "done" and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                                               for v in values)


def best_tuned(rows: list[dict[str, Any]], key: str, loss: str) -> list[dict[str, Any]]:
    """Of the rows whose config values (the dotted columns) agree except `key`, the one with the
    lowest loss: a hyperparameter tuned per model size and budget (Chinchilla tunes the learning
    rate per size), so the fit sees each point at its best setting."""
    shared = set.intersection(*({k for k in row if "." in k} for row in rows)) - {key} if rows else set()
    best: dict[str, dict[str, Any]] = {}
    for row in rows:  # keys some rows lack (a config key added since a run) do not split groups
        group = json.dumps(sorted((k, row[k]) for k in shared), default=str)
        if group not in best or row[loss] < best[group][loss]:
            best[group] = row
    return list(best.values())


def points(rows: list[dict[str, Any]], cfg: AnalysisConfig) -> dict[str, Points]:
    """Family name -> its finished runs (model.name from each run's config); with cfg.tuned, only
    the best run of each group that differs in that key alone. The constant-LR parents of
    cooldown forks are left out: their forks, cooled down, are the sweep's points."""
    parents = {row.get("fork_of") for row in rows} - {None, ""}
    usable = [row for row in rows if _usable(row, cfg) and row["name"] not in parents]
    if cfg.tuned:
        usable = best_tuned(usable, cfg.tuned, cfg.loss)
    by_family: dict[str, list[dict[str, Any]]] = {}
    for row in usable:
        by_family.setdefault(str(row.get("model.name", "model")), []).append(row)
    out = {}
    for family, rs in by_family.items():
        N = np.array([r[cfg.params] for r in rs], np.float64)
        D = np.array([r["tokens"] for r in rs], np.float64)
        C = 6.0 * N * D if cfg.compute == "6ND" else np.array([r.get("flops") or 0.0 for r in rs], np.float64)
        out[family] = Points([r["name"] for r in rs], N, D, C, np.array([r[cfg.loss] for r in rs], np.float64))
    return out


def best_per(x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct x, the lowest loss at each)."""
    xs = np.unique(x)
    return xs, np.array([loss[x == v].min() for v in xs])


def frontier(C: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the compute frontier, by C: runs with a lower loss than every cheaper run."""
    order = np.argsort(C, kind="stable")
    keep, best = [], np.inf
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.array(keep, dtype=int)


def budgets(C: np.ndarray) -> np.ndarray:
    """A budget index per run, the groups Approach 2 fits (fit.budget_groups: runs sorted by C, a
    new budget where neighbours differ by more than BUDGET_DECADES)."""
    out = np.empty(len(C), dtype=int)
    for b, idx in enumerate(fit.budget_groups(np.log(C), BUDGET_DECADES)):
        out[idx] = b
    return out


def _json(est: Estimate) -> dict[str, Any]:
    return {k: np.asarray(getattr(est, k)).tolist() for k in ("value", "low", "high")}


def _attempt(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A fit's JSON, or {"skipped": why} when the runs do not determine it."""
    try:
        return make()
    except ValueError as e:
        return {"skipped": str(e)}


def _power_law(x: np.ndarray, loss: np.ndarray, cfg: AnalysisConfig, **extra) -> dict[str, Any]:
    law = fit.fit_power_law(x, loss, num_bootstrap=cfg.num_bootstrap, seed=cfg.seed)
    return {"alpha": _json(law.alpha), "x_c": _json(law.x_c), "x": x.tolist(), "loss": loss.tolist(), **extra}


def _approach2(p: Points, cfg: AnalysisConfig) -> dict[str, Any]:
    law = fit.fit_isoflop(p.N, p.D, p.loss, C=p.C, log10_tolerance=BUDGET_DECADES,
                          num_bootstrap=cfg.num_bootstrap, seed=cfg.seed)
    return {"a": _json(law.a), "b": _json(law.b), "k_n": _json(law.k_n), "budgets": law.budgets.tolist(),
            "n_opt": _json(law.n_opt), "d_opt": _json(law.d_opt), "loss_opt": law.loss_opt.tolist(),
            "outside_sampled": law.budgets[law.outside].tolist()}


def _approach3(p: Points, cfg: AnalysisConfig) -> dict[str, Any]:
    law = fit.fit_chinchilla(p.N, p.D, p.loss, num_bootstrap=cfg.num_bootstrap, seed=cfg.seed)
    c_max = float(p.C.max())
    return {**{k: _json(getattr(law, k)) for k in ("E", "A", "B", "alpha", "beta", "a_opt", "b_opt")},
            "at_largest_C": {"C": c_max, "n_opt": _json(law.optimal_n(c_max)),
                             "tokens_per_parameter": _json(law.tokens_per_parameter(c_max))},
            "params": law.params.tolist(), "predicted": law.predict(p.N, p.D).tolist()}


def _heldout(p: Points, cfg: AnalysisConfig) -> dict[str, Any]:
    """Fit on all but the held-out runs, predict those; the error is (predicted - measured) / measured."""
    if cfg.holdout == "none":
        raise ValueError("analysis.holdout is 'none'")
    if cfg.holdout == "largest_compute":
        group = budgets(p.C)
        held = group == group.max()
    else:
        held = p.N == p.N.max()
    if held.all():
        raise ValueError(f"every run is in the held-out set ({cfg.holdout}): add smaller runs")
    train, test = p.take(~held), p.take(held)
    try:
        law = fit.fit_chinchilla(train.N, train.D, train.loss, num_bootstrap=cfg.num_bootstrap, seed=cfg.seed)
        predicted, (low, high) = law.predict(test.N, test.D), law.predict_interval(test.N, test.D)
        used = "approach3"
    except ValueError as approach3_failed:  # too few runs for 5 parameters: the Kaplan law on that axis
        if cfg.holdout == "largest_compute":
            keep = frontier(train.C, train.loss)
            (xs, best), x_test, used = (train.C[keep], train.loss[keep]), test.C, "kaplan_c"
        else:
            (xs, best), x_test, used = best_per(train.N, train.loss), test.N, "kaplan_n"
        try:
            law = fit.fit_power_law(xs, best, num_bootstrap=cfg.num_bootstrap, seed=cfg.seed)
        except ValueError as e:
            raise ValueError(f"Approach 3: {approach3_failed}; Kaplan: {e}") from e
        predicted, (low, high) = law.predict(x_test), law.predict_interval(x_test)
    error = (predicted - test.loss) / test.loss
    return {"holdout": cfg.holdout, "law": used, "fitted_on": len(train.names),
            "runs": [{"name": n, "N": float(a), "D": float(d), "C": float(c), "measured": float(m),
                      "predicted": float(pr), "low": float(lo), "high": float(hi), "error": float(e)}
                     for n, a, d, c, m, pr, lo, hi, e in zip(test.names, test.N, test.D, test.C, test.loss,
                                                             predicted, low, high, error)],
            "mean_abs_error": float(np.mean(np.abs(error)))}


def fit_family(p: Points, cfg: AnalysisConfig) -> dict[str, Any]:
    """Every fit the family's runs allow."""
    front = frontier(p.C, p.loss)
    return {
        "runs": len(p.names),
        "fitted": p.names,
        "kaplan_n": _attempt(lambda: _power_law(*best_per(p.N, p.loss), cfg)),
        "kaplan_d": _attempt(lambda: _power_law(*best_per(p.D, p.loss), cfg)),
        "kaplan_c": _attempt(lambda: _power_law(p.C[front], p.loss[front], cfg,
                                                names=[p.names[i] for i in front])),
        "approach2": _attempt(lambda: _approach2(p, cfg)),
        "approach3": _attempt(lambda: _approach3(p, cfg)),
        "heldout": _attempt(lambda: _heldout(p, cfg)),
    }


def analyze(rows: list[dict[str, Any]], cfg: AnalysisConfig) -> dict[str, Any]:
    """{"config": ..., "families": {family: fit_family(...)}} for the table's finished runs."""
    return {"config": dataclasses.asdict(cfg),
            "families": {family: fit_family(p, cfg) for family, p in points(rows, cfg).items()}}


def _fmt(e: dict[str, Any]) -> str:
    return f"{e['value']:.3g} [{e['low']:.3g}, {e['high']:.3g}]"


def summary(fits: dict[str, Any]) -> list[str]:
    """A few lines per family: each law's exponents with their intervals, or why it was skipped."""
    lines = []
    for family, f in fits["families"].items():
        lines.append(f"{family}: {f['runs']} finished runs (estimates with 95% bootstrap intervals)")
        for key, label in (("kaplan_n", "L(N)"), ("kaplan_d", "L(D)"), ("kaplan_c", "L(C)")):
            law = f[key]
            lines.append(f"  {label}: alpha {_fmt(law['alpha'])}" if "alpha" in law else
                         f"  {label}: skipped ({law['skipped']})")
        a2 = f["approach2"]
        lines.append(f"  Approach 2: N* ~ C^a, a {_fmt(a2['a'])}" if "a" in a2 else
                     f"  Approach 2: skipped ({a2['skipped']})")
        if a2.get("outside_sampled"):
            budgets_ = ", ".join(f"C~{c:.3g}" for c in a2["outside_sampled"])
            lines.append(f"  Approach 2: warning: the minimum N* of budget(s) {budgets_} lies outside the sizes "
                         "run there (an extrapolated parabola): add sizes beyond it")
        a3 = f["approach3"]
        lines.append(f"  Approach 3: E {_fmt(a3['E'])}, alpha {_fmt(a3['alpha'])}, beta {_fmt(a3['beta'])}, "
                     f"a {_fmt(a3['a_opt'])}" if "E" in a3 else f"  Approach 3: skipped ({a3['skipped']})")
        held = f["heldout"]
        if "runs" in held:
            for r in held["runs"]:
                lines.append(f"  held out {r['name']}: measured {r['measured']:.4f}, predicted {r['predicted']:.4f} "
                             f"[{r['low']:.4f}, {r['high']:.4f}] by {held['law']} on {held['fitted_on']} runs, "
                             f"error {100 * r['error']:+.1f}%")
        else:
            lines.append(f"  held-out prediction: skipped ({held['skipped']})")
    return lines


def write(fits: dict[str, Any], sweep_dir: str) -> str:
    path = os.path.join(sweep_dir, FITS_JSON)
    with open(path + ".tmp", "w") as f:
        json.dump(fits, f, indent=1)
    os.replace(path + ".tmp", path)
    return path
