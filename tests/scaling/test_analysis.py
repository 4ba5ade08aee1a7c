"""A sweep's fits and plots on rows drawn from a known law (Besiroglu et al.'s Chinchilla fit)."""
import math
import sys

import ml_collections
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.scaling import analysis, plots
from llmjax.scaling.analysis import AnalysisConfig

TRUE = dict(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)


def _law(N, D):
    return TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]


def _isoflop_rows(budgets=(1e18, 3e18, 1e19, 3e19, 1e20), sizes=7, noise=0.003, seed=0, family="gpt"):
    """An isoFLOP design around each budget's optimum, losses with multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_opt = 0.6 * (C / 6.0) ** 0.5
        for N in n_opt * np.geomspace(1 / 8, 8, sizes):
            D = C / (6.0 * N)
            loss = _law(N, D) * math.exp(noise * rng.standard_normal())
            rows.append({"name": f"{family},N={N:.3g},C={C:g}", "status": "done", "params": N, "tokens": D,
                         "flops": 6.0 * N * D, "final_eval_loss": loss, "model.name": family})
    return rows


def test_the_fits_recover_the_law_and_predict_the_held_out_budget():
    cfg = AnalysisConfig(num_bootstrap=40)
    fits = analysis.analyze(_isoflop_rows(), cfg)["families"]["gpt"]
    a3 = fits["approach3"]
    for key in ("alpha", "beta"):
        assert a3[key]["low"] <= TRUE[key] <= a3[key]["high"], (key, a3[key])
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert abs(fits["approach2"]["a"]["value"] - a_true) < 0.05
    held = fits["heldout"]
    assert held["law"] == "approach3" and held["fitted_on"] == 28 and len(held["runs"]) == 7
    assert all(r["C"] == pytest.approx(1e20) for r in held["runs"])
    assert held["mean_abs_error"] < 0.01
    assert sum(r["low"] <= r["measured"] <= r["high"] for r in held["runs"]) >= 5
    for key in ("kaplan_n", "kaplan_d", "kaplan_c"):
        assert fits[key]["alpha"]["value"] > 0, key


def test_the_summary_warns_of_an_extrapolated_isoflop_minimum():
    rows = _isoflop_rows(budgets=(1e18, 1e19, 1e20), sizes=7, noise=0.0)
    fits = analysis.analyze(rows, AnalysisConfig(num_bootstrap=10))
    assert fits["families"]["gpt"]["approach2"]["outside_sampled"] == []
    assert not any("warning" in l for l in analysis.summary(fits))
    # C = 1e18 without its two smallest sizes: its N* (~88M) lies between them and the rest.
    smallest = sorted(r["params"] for r in rows if r["flops"] < 2e18)[:2]
    one_sided = [r for r in rows if r["params"] not in smallest]
    fits = analysis.analyze(one_sided, AnalysisConfig(num_bootstrap=10))
    assert fits["families"]["gpt"]["approach2"]["outside_sampled"] == [pytest.approx(1e18)]
    assert "  Approach 2: warning: the minimum N* of budget(s) C~1e+18 lies outside the sizes run there" \
        in "\n".join(analysis.summary(fits))


def test_too_few_runs_skip_fits_with_the_reason_instead_of_failing():
    rows = _isoflop_rows(budgets=(1e18,), sizes=3)
    fits = analysis.analyze(rows, AnalysisConfig(num_bootstrap=10))["families"]["gpt"]
    assert "one compute budget" in fits["approach2"]["skipped"] or "runs" in fits["approach2"]["skipped"]
    assert "at least 6" in fits["approach3"]["skipped"]
    assert "every run is in the held-out set" in fits["heldout"]["skipped"]
    lines = analysis.summary({"families": {"gpt": fits}})
    assert any(l.startswith("  Approach 3: skipped (") for l in lines)


def test_unfinished_and_nonfinite_runs_are_left_out_and_families_fitted_apart():
    rows = _isoflop_rows(sizes=5) + _isoflop_rows(sizes=5, family="lstm")
    rows[0] = {**rows[0], "status": "failed"}
    rows[1] = {**rows[1], "final_eval_loss": float("nan")}
    pts = analysis.points(rows, AnalysisConfig())
    assert sorted(pts) == ["gpt", "lstm"] and len(pts["gpt"].names) == 23 and len(pts["lstm"].names) == 25


def test_compute_column_and_frontier():
    rows = [{"name": str(i), "status": "done", "params": n, "tokens": d, "flops": f, "final_eval_loss": l}
            for i, (n, d, f, l) in enumerate([(10, 100, 1e5, 3.0), (20, 100, 2e5, 3.5), (20, 400, 8e5, 2.5)])]
    p = analysis.points(rows, AnalysisConfig(compute="6ND"))["model"]
    assert p.C.tolist() == [6000.0, 12000.0, 48000.0]
    assert analysis.frontier(p.C, p.loss).tolist() == [0, 2]  # run 1 costs more than run 0 and is worse
    assert analysis.budgets(np.array([1e5, 1.05e5, 3e5, 1e6])).tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("given, needle", [
    ({"param": "params"}, "analysis.param is not a key"),
    ({"compute": "6N"}, "analysis.compute='6N': must be one of flops, 6ND"),
    ({"holdout": "last"}, "analysis.holdout='last'"),
])
def test_bad_analysis_config_is_one_line(given, needle):
    sweep = ml_collections.ConfigDict({"analysis": given})
    with pytest.raises(ConfigError, match=needle):
        AnalysisConfig.from_sweep(sweep)


def test_plots_are_written_for_what_the_sweep_has(tmp_path):
    pytest.importorskip("matplotlib")
    rows = _isoflop_rows(budgets=(1e18, 1e19, 1e20), sizes=5)
    for r in rows[:3]:  # eval curves of three runs, as their metrics.jsonl
        r["step"] = 100
        (tmp_path / r["name"]).mkdir()
        (tmp_path / r["name"] / "metrics.jsonl").write_text(
            '{"step": 50, "split": "eval", "loss": 3.1}\n{"step": 100, "split": "train", "loss": 3.0}\n'
            '{"step": 100, "split": "eval", "loss": 2.9}\n')
    cfg = AnalysisConfig(num_bootstrap=3)  # the plots draw the bands, whatever their width
    fits = analysis.analyze(rows, cfg)
    paths = plots.write_all(rows, fits, cfg, str(tmp_path))
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["frontier.png", "isoflop.png", "loss_vs_tokens.png", "residuals.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    both = rows + _isoflop_rows(budgets=(1e18, 1e19, 1e20), sizes=5, family="lstm")
    paths = plots.write_all(both, analysis.analyze(both, cfg), cfg, str(tmp_path / "two"))
    assert {p.split("/plots/", 1)[1] for p in paths} >= {"families.png", "gpt/isoflop.png", "lstm/isoflop.png"}


def test_without_matplotlib_plots_say_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.write_all([], {"families": {}}, AnalysisConfig(), str(tmp_path))


def test_a_tuned_key_fits_each_point_at_its_best_value():
    rows = _isoflop_rows(budgets=(1e18, 1e19), sizes=3)
    for r in rows:
        r["optim.lr"], r["model.d_model"] = 1e-3, int(r["params"])
    worse = [{**r, "name": r["name"] + ",lr=3e-3", "optim.lr": 3e-3, "final_eval_loss": r["final_eval_loss"] + 0.5}
             for r in rows]
    better = {**rows[0], "name": rows[0]["name"] + ",lr=1e-2", "optim.lr": 1e-2, "final_eval_loss": 1.0,
              "model.parametrization": "standard"}  # a run made after a config key was added
    mixed = rows + worse + [better]
    plain = analysis.points(mixed, AnalysisConfig())["gpt"]
    tuned = analysis.points(mixed, AnalysisConfig(tuned="optim.lr"))["gpt"]
    assert len(plain.names) == 13 and len(tuned.names) == 6
    assert better["name"] in tuned.names and rows[0]["name"] not in tuned.names
    assert not any(n.endswith(",lr=3e-3") for n in tuned.names)


def test_a_tuned_key_the_axes_do_not_vary_is_refused():
    sweep = ml_collections.ConfigDict({"base": "configs/gpt_small.py", "axes": [{"model.d_model": [32, 64]}],
                                       "analysis": {"tuned": "optim.lr"}})
    with pytest.raises(ConfigError, match="analysis.tuned='optim.lr' is not a key the axes vary: name one of model.d_model"):
        AnalysisConfig.from_sweep(sweep)


def test_the_constant_lr_parents_of_cooldown_forks_are_not_fitted():
    rows = _isoflop_rows(budgets=(1e18,), sizes=3)
    forks = [{**r, "name": r["name"] + ",fork=100", "fork_of": r["name"], "fork_step": 80} for r in rows[:2]]
    names = analysis.points(rows + forks, AnalysisConfig())["gpt"].names
    assert sorted(names) == sorted([f["name"] for f in forks] + [rows[2]["name"]])
