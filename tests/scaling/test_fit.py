"""The fitters recover known laws from synthetic runs with 1% lognormal noise, within their own
95% bootstrap intervals, deterministically under a seed; bad input fails in one line.

The design is a realistic isoFLOP sweep: 5 budgets (1e15..1e19 FLOPs) x 7 model sizes over
+-0.6 decades around a centre up to 0.2 decades off each budget's true optimum (N from 3.9e5 to
1.1e9), D = C / (6N), losses from Besiroglu et al. 2024's fit of Chinchilla (E 1.82, A 482,
B 2085, alpha 0.35, beta 0.37).
"""
import subprocess
import sys

import numpy as np
import pytest

from llmjax.scaling.fit import fit_chinchilla, fit_isoflop, fit_power_law

LAW = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}
A_OPT = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
BUDGETS = np.logspace(15, 19, 5)
OFF_CENTRE = 10.0 ** np.array([-0.2, 0.1, 0.2, -0.1, 0.0])  # a sweep does not know the optimum


def law_loss(N, D):
    return LAW["E"] + LAW["A"] / N ** LAW["alpha"] + LAW["B"] / D ** LAW["beta"]


def law_n_opt(C):
    """argmin over N of the law at D = C / (6N)."""
    g = (LAW["alpha"] * LAW["A"] / (LAW["beta"] * LAW["B"])) ** (1 / (LAW["alpha"] + LAW["beta"]))
    return g * (C / 6) ** A_OPT


def sweep(seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    N = np.concatenate([law_n_opt(C) * off * np.logspace(-0.6, 0.6, 7)
                        for C, off in zip(BUDGETS, OFF_CENTRE)])
    C = np.repeat(BUDGETS, 7)
    D = C / (6 * N)
    return N, D, law_loss(N, D) * np.exp(noise * rng.standard_normal(N.shape)), C


@pytest.fixture(scope="module")
def chinchilla():
    N, D, loss, _ = sweep()
    return fit_chinchilla(N, D, loss, num_bootstrap=100)


def test_chinchilla_recovers_the_law_within_its_intervals(chinchilla):
    fit = chinchilla
    for name, true in {**LAW, "a_opt": A_OPT, "b_opt": 1 - A_OPT}.items():
        est = getattr(fit, name)
        assert est.contains(true), f"{name}: {est} misses {true}"
    assert fit.alpha.high - fit.alpha.low < 0.1 and fit.beta.high - fit.beta.low < 0.1
    assert fit.a_opt.high - fit.a_opt.low < 0.05


def test_chinchilla_predicts_loss_and_compute_optimal_sizes(chinchilla):
    N, D, _, _ = sweep()
    low, high = chinchilla.predict_interval(N, D)
    assert np.all((low <= law_loss(N, D)) & (law_loss(N, D) <= high))
    np.testing.assert_allclose(chinchilla.predict(N, D), law_loss(N, D), rtol=0.01)
    C = np.array([1e17, 1e21])  # inside the sweep and two decades past it
    n_opt, d_opt = chinchilla.optimal_n(C), chinchilla.optimal_d(C)
    assert n_opt.contains(law_n_opt(C)) and d_opt.contains(C / (6 * law_n_opt(C)))
    ratio = chinchilla.tokens_per_parameter(1e21)
    assert isinstance(ratio.value, float)
    assert ratio.value == pytest.approx(d_opt.value[1] / n_opt.value[1])
    assert ratio.contains(1e21 / (6 * law_n_opt(1e21) ** 2))
    assert n_opt.value[0] == pytest.approx(law_n_opt(1e17), rel=0.06)


def test_chinchilla_fits_a_noiseless_law_exactly():
    """Hoffmann et al.'s published fit (alpha != beta) on the sweep's N and D: the Huber fit
    reaches the law itself, and N* is its closed form."""
    hoffmann = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    N, D, _, _ = sweep()
    loss = hoffmann["E"] + hoffmann["A"] / N ** 0.34 + hoffmann["B"] / D ** 0.28
    fit = fit_chinchilla(N, D, loss, num_bootstrap=2)
    for name, true in hoffmann.items():
        assert getattr(fit, name).value == pytest.approx(true, rel=1e-4), name
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert fit.optimal_n(5.76e23).value == pytest.approx(g * (5.76e23 / 6) ** (0.28 / 0.62),
                                                         rel=1e-3)


def test_isoflop_recovers_the_exponent_and_minima():
    N, D, loss, C = sweep()
    fit = fit_isoflop(N, D, loss)
    assert fit.a.contains(A_OPT) and fit.a.high - fit.a.low < 0.1, fit.a
    assert fit.b.value == pytest.approx(1 - fit.a.value)
    np.testing.assert_allclose(fit.budgets, BUDGETS, rtol=1e-9)
    # A parabola is not the isoFLOP curve: off-centre sweeps bias each minimum a little.
    np.testing.assert_allclose(fit.n_opt.value, law_n_opt(BUDGETS), rtol=0.15)
    np.testing.assert_allclose(fit.d_opt.value, BUDGETS / (6 * fit.n_opt.value))
    assert fit.optimal_n(1e19).contains(law_n_opt(1e19))
    # Budgets given instead of 6ND give the same fit; so do runs whose 6ND is off by 5%.
    assert fit_isoflop(N, D, loss, C).a.value == pytest.approx(fit.a.value, rel=1e-9)
    assert fit_isoflop(N, D * np.resize([0.95, 1.05], len(D)), loss).budgets.shape == (5,)
    assert not fit.outside.any()


def test_isoflop_flags_a_minimum_beyond_the_sizes_run():
    """A budget swept only on one side of its optimum still gives a parabola, whose vertex is an
    extrapolation: flagged for that budget alone."""
    N, D, loss, C = sweep()
    first = C == C.min()
    smallest = N <= np.median(N[first])
    keep = ~first | (first & smallest)  # the first budget: only its smaller half of sizes
    fit = fit_isoflop(N[keep], D[keep], loss[keep], C[keep])
    assert fit.outside.tolist() == [True] + [False] * (len(fit.budgets) - 1), (fit.n_opt.value, N[keep & first])


def test_power_law_recovers_kaplan_alpha_and_x_c():
    rng = np.random.default_rng(0)
    N = np.logspace(6, 9, 8)
    loss = (8.8e13 / N) ** 0.076 * np.exp(0.01 * rng.standard_normal(8))  # Kaplan's L(N)
    fit = fit_power_law(N, loss)
    assert fit.alpha.contains(0.076) and fit.x_c.contains(8.8e13), fit
    assert fit.alpha.value == pytest.approx(0.076, rel=0.05)
    assert fit.x_c.value == pytest.approx(8.8e13, rel=0.5)  # log x_c = k / alpha: sensitive
    assert fit.irreducible is None
    low, high = fit.predict_interval(N)
    assert np.all((low <= (8.8e13 / N) ** 0.076) & ((8.8e13 / N) ** 0.076 <= high))


def test_power_law_with_irreducible_loss():
    rng = np.random.default_rng(0)
    x = np.logspace(6, 9, 12)
    true = 1.7 + (1.25e8 / x) ** (1 / 3)  # the reducible part falls from 5 to 0.5
    fit = fit_power_law(x, true * np.exp(0.01 * rng.standard_normal(12)), irreducible=True)
    assert fit.irreducible.contains(1.7) and fit.alpha.contains(1 / 3), fit
    assert fit.x_c.contains(1.25e8) and fit.x_c.value == pytest.approx(1.25e8, rel=0.3)
    np.testing.assert_allclose(fit.predict(x), true, rtol=0.02)


def test_fits_are_deterministic_under_a_seed():
    N, D, loss, _ = sweep()
    one, two = (fit_chinchilla(N, D, loss, num_bootstrap=10, seed=3) for _ in range(2))
    assert one == two and np.array_equal(one.samples, two.samples)
    assert fit_chinchilla(N, D, loss, num_bootstrap=10, seed=4).alpha != one.alpha
    assert fit_isoflop(N, D, loss, seed=3) == fit_isoflop(N, D, loss, seed=3)
    assert fit_isoflop(N, D, loss, seed=3).a != fit_isoflop(N, D, loss, seed=4).a
    assert fit_power_law(N, loss, seed=3) == fit_power_law(N, loss, seed=3)


def concave_first_budget():
    N, D, loss, _ = sweep()
    log_n = np.log(N[:7])
    return N, D, np.r_[10.0 - (log_n - log_n.mean()) ** 2, loss[7:]]


N6, D6, L6 = np.logspace(6, 8, 6), np.logspace(8, 10, 6), np.linspace(4.0, 3.0, 6)


@pytest.mark.parametrize("call, match", [
    (lambda: fit_chinchilla(N6, D6[:5], L6), r"D has 5 values but N has 6"),
    (lambda: fit_chinchilla(N6, D6, np.r_[L6[:5], 0.0]), r"loss\[5\]=0.0: must be positive"),
    (lambda: fit_chinchilla(N6, D6, np.r_[L6[:5], np.nan]), r"loss\[5\]=nan"),
    (lambda: fit_chinchilla(N6[:5], D6[:5], L6[:5]), r"5 runs: this fit needs at least 6"),
    (lambda: fit_chinchilla(np.full(6, 1e6), D6, L6), r"N takes one value"),
    (lambda: fit_chinchilla(N6, D6, L6, grid=np.zeros((3, 4))), r"grid has shape \(3, 4\)"),
    (lambda: fit_chinchilla(N6, D6, L6, num_bootstrap=1), r"num_bootstrap=1"),
    (lambda: fit_power_law(N6, L6, level=95), r"level=95: must be in \(0, 1\)"),
    (lambda: fit_power_law(N6, L6[::-1]), r"loss does not fall with x"),
    (lambda: fit_power_law(N6[:3], L6[:3], irreducible=True), r"needs at least 4"),
    (lambda: fit_isoflop(N6, D6, L6), r"budget C~.* no parabola minimum"),
    (lambda: fit_isoflop(N6, 1e19 / (6 * N6), L6), r"one compute budget \(C~1e\+19\)"),
    (lambda: fit_chinchilla(N6, D6, L6, delta=0.0), r"delta=0.0, num_starts=8: need delta > 0"),
    (lambda: fit_chinchilla(N6[None], D6, L6), r"N has shape \(1, 6\): pass one value per run"),
    (lambda: fit_isoflop(*concave_first_budget()),
     r"budget C~1e\+15 \(7 model sizes\): no parabola minimum"),
])
def test_bad_input_fails_in_one_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_importing_the_fitters_loads_no_jax_and_no_other_llmjax_module():
    code = ("import sys, llmjax.scaling.fit; print(sorted(m for m in sys.modules if m.split('.')[0]"
            " in ('jax', 'flax', 'torch', 'tensorflow') or m.startswith('llmjax.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['llmjax.scaling',", "'llmjax.scaling.bootstrap',",
                                  "'llmjax.scaling.fit']"]
