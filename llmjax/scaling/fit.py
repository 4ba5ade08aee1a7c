"""Fit scaling laws to tables of runs: Kaplan power laws, Chinchilla Approaches 2 and 3.

Every fitter takes plain arrays, one value per run (parameters N, tokens D, compute C, final
loss), so a published table fits as well as an llmjax sweep. A result holds point estimates
from all runs and percentile intervals from a seeded bootstrap (runs resampled with
replacement; Approach 2 resamples within each compute budget); its predictions get intervals
from the bootstrap fits. Compute is C = 6ND.

fit_power_law   Kaplan et al. 2020: L = (x_c / x)^alpha for x = N, D or C, least squares in
                log-log; irreducible=True adds E: L = E + (x_c / x)^alpha, least squares on log L.
fit_isoflop     Hoffmann et al. 2022, Approach 2: per budget a parabola of loss in log N, its
                minimum N*(C), then N* = k_n C^a and D* = C / (6 N*) = k_d C^b.
fit_chinchilla  Approach 3 as Besiroglu et al. 2024 replicate it: L = E + A/N^alpha + B/D^beta
                minimising sum_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e) -
                log L_i) with L-BFGS; E, A, B = exp(e), exp(a), exp(b).

Approach 3's starts: the objective is evaluated on all 4500 points of Hoffmann's grid in one
numpy pass and L-BFGS runs from the best num_starts (8). On 35-run isoFLOP designs like the
tests', L-BFGS from every grid point (3-4 minutes on 2 busy CPU cores) found the same minimum
as the best 8 (0.1 s on an idle core) and as the best 1. Each bootstrap resample starts from
the full-data fit alone: on 30 resamples that reached the minima (objective within 1e-12,
relative) of re-ranking the grid per resample and adding its best 8, in under a tenth of the
time. On a busy machine OpenBLAS's threads slow scipy's L-BFGS-B many times over (seen: 10-30x);
OPENBLAS_NUM_THREADS=1 avoids that.

Shape key: R runs, K parameters of a law, P parameter rows (grid starts or bootstrap fits),
B compute budgets, Q query points.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize, special

from llmjax.scaling.bootstrap import Estimate, bootstrap, check_bootstrap, estimate, interval, runs

__all__ = ["Estimate", "PowerLawFit", "IsoflopFit", "ChinchillaFit", "HOFFMANN_GRID",
           "fit_power_law", "fit_isoflop", "fit_chinchilla"]

LOG6 = np.log(6.0)  # C = 6ND

# Hoffmann et al.'s starts as rows (a, b, e, alpha, beta): a, b in {0, 5, .., 25},
# e in {-1, -.5, .., 1}, alpha, beta in {0, .5, .., 2}; 4500 rows.
HOFFMANN_GRID = np.stack(np.meshgrid(
    np.arange(0.0, 26.0, 5.0), np.arange(0.0, 26.0, 5.0), np.linspace(-1.0, 1.0, 5),
    np.linspace(0.0, 2.0, 5), np.linspace(0.0, 2.0, 5), indexing="ij"), -1).reshape(-1, 5)


class _ComputeOptimal:
    """N*, D* and D*/N* at compute C = 6ND from a law's log N*(log C) (`_log_n_opt` of the
    `params` row and of the bootstrap `samples` rows)."""

    def optimal_n(self, C: float | np.ndarray) -> Estimate:
        return self._at(C, lambda log_c, log_n: log_n)

    def optimal_d(self, C: float | np.ndarray) -> Estimate:
        return self._at(C, lambda log_c, log_n: log_c - LOG6 - log_n)

    def tokens_per_parameter(self, C: float | np.ndarray) -> Estimate:
        return self._at(C, lambda log_c, log_n: log_c - LOG6 - 2.0 * log_n)

    def _at(self, C, log_f) -> Estimate:
        (c_Q,) = runs(1, C=np.atleast_1d(C))
        log_c_Q = np.log(c_Q)
        value_Q = np.exp(log_f(log_c_Q, self._log_n_opt(self.params[None], log_c_Q)[0]))
        samples_PxQ = np.exp(log_f(log_c_Q, self._log_n_opt(self.samples, log_c_Q)))
        if np.ndim(C) == 0:
            value_Q, samples_PxQ = value_Q[0], samples_PxQ[:, 0]
        return estimate(value_Q, samples_PxQ, self.level)


# ---------------------------------------------------------------- Kaplan power law


def _power_law(theta_PxK: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(P, *x.shape) E + exp(k - alpha log x) for rows (alpha, k, E); k = alpha log x_c."""
    alpha, k, e = (theta_PxK[:, i].reshape((-1,) + (1,) * np.ndim(x)) for i in range(3))
    return e + np.exp(k - alpha * np.log(np.asarray(x, np.float64)))


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """L = E + (x_c / x)^alpha; irreducible (E) is None when it was not fitted (E = 0)."""
    alpha: Estimate
    x_c: Estimate
    irreducible: Estimate | None
    level: float
    params: np.ndarray = dataclasses.field(repr=False, compare=False)   # (alpha, k, E)
    samples: np.ndarray = dataclasses.field(repr=False, compare=False)  # (P, 3) bootstrap rows

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _power_law(self.params[None], x)[0]

    def predict_interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return interval(_power_law(self.samples, x), self.level)


def _fit_loglog(log_x: np.ndarray, log_l: np.ndarray) -> np.ndarray | None:
    if np.unique(log_x).size < 2:
        return None
    slope, k = np.polyfit(log_x, log_l, 1)
    return np.array([-slope, k, 0.0])


def _fit_irreducible(log_x: np.ndarray, log_l: np.ndarray) -> np.ndarray | None:
    """Least squares on log L from log-log starts at E = 0, 50% and 90% of the lowest loss."""
    if np.unique(log_x).size < 3:
        return None

    def residual(theta):
        return np.log(theta[2] + np.exp(theta[1] - theta[0] * log_x)) - log_l

    best = None
    for frac in (0.0, 0.5, 0.9):
        e0 = frac * np.exp(log_l.min())
        start = _fit_loglog(log_x, np.log(np.exp(log_l) - e0))
        start[2] = e0
        sol = optimize.least_squares(residual, start, bounds=([-np.inf, -np.inf, 0.0], np.inf),
                                     x_scale="jac")
        best = sol if best is None or sol.cost < best.cost else best
    return best.x


def fit_power_law(x: np.ndarray, loss: np.ndarray, *, irreducible: bool = False,
                  num_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> PowerLawFit:
    """Kaplan's L = (x_c / x)^alpha for x = N, D or C (or L = E + (x_c / x)^alpha with
    irreducible=True, for losses that flatten towards an entropy floor)."""
    check_bootstrap(num_bootstrap, level)
    x, loss = runs(4 if irreducible else 3, x=x, loss=loss)
    log_x, log_l = np.log(x), np.log(loss)
    fit_one = _fit_irreducible if irreducible else _fit_loglog
    params = fit_one(log_x, log_l)
    if params is None:
        raise ValueError(f"x takes fewer than {3 if irreducible else 2} distinct values: vary x")
    if params[0] <= 0:
        raise ValueError(f"loss does not fall with x (alpha={params[0]:.3g}): no power law")
    samples = bootstrap(lambda idx: fit_one(log_x[idx[0]], log_l[idx[0]]),
                        [np.arange(len(x))], num_bootstrap, seed)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # x_c of a resample with alpha near 0
        x_c = estimate(np.exp(params[1] / params[0]), np.exp(samples[:, 1] / samples[:, 0]), level)
    return PowerLawFit(alpha=estimate(params[0], samples[:, 0], level), x_c=x_c,
                       irreducible=estimate(params[2], samples[:, 2], level) if irreducible
                       else None, level=level, params=params, samples=samples)


# ---------------------------------------------------------------- Approach 2: isoFLOP parabolas


def budget_groups(log_c_R: np.ndarray, log10_tolerance: float) -> list[np.ndarray]:
    """Run indices per budget: runs sorted by C, a new budget where neighbours differ by more
    than log10_tolerance decades."""
    order = np.argsort(log_c_R, kind="stable")
    cuts = np.flatnonzero(np.diff(log_c_R[order]) > log10_tolerance * np.log(10.0)) + 1
    return np.split(order, cuts)


def _parabola_min(log_n: np.ndarray, loss: np.ndarray) -> tuple[float, float] | None:
    """(log N*, L*) at the vertex of the least-squares parabola of loss in log N; None when
    fewer than 3 distinct N or the parabola opens downwards (no minimum)."""
    if np.unique(log_n).size < 3:
        return None
    centre = log_n.mean()
    c2, c1, c0 = np.polyfit(log_n - centre, loss, 2)
    if c2 <= 0:
        return None
    return centre - c1 / (2.0 * c2), c0 - c1 * c1 / (4.0 * c2)


@dataclasses.dataclass(frozen=True)
class IsoflopFit(_ComputeOptimal):
    """N* = k_n C^a and D* = k_d C^b from the isoFLOP minima; b = 1 - a and k_d = 1 / (6 k_n)
    follow from D* = C / (6 N*). The per-budget fields are for plots."""
    a: Estimate
    b: Estimate
    k_n: Estimate
    k_d: Estimate
    level: float
    # Per budget (B,), derived from params and samples (so left out of ==):
    budgets: np.ndarray = dataclasses.field(compare=False)  # geometric mean C of its runs
    n_opt: Estimate = dataclasses.field(compare=False)      # the parabola minima N*
    d_opt: Estimate = dataclasses.field(compare=False)      # C / (6 N*)
    loss_opt: np.ndarray = dataclasses.field(compare=False)  # the parabola minimum losses
    outside: np.ndarray = dataclasses.field(compare=False)  # bool: N* beyond the budget's sampled sizes
    params: np.ndarray = dataclasses.field(repr=False, compare=False)   # (a, log k_n, log N*_B)
    samples: np.ndarray = dataclasses.field(repr=False, compare=False)  # (P, 2 + B)

    @staticmethod
    def _log_n_opt(theta_PxK: np.ndarray, log_c_Q: np.ndarray) -> np.ndarray:
        return theta_PxK[:, 1, None] + theta_PxK[:, 0, None] * log_c_Q


def fit_isoflop(N: np.ndarray, D: np.ndarray, loss: np.ndarray, C: np.ndarray | None = None, *,
                log10_tolerance: float = 0.05, num_bootstrap: int = 200, level: float = 0.95,
                seed: int = 0) -> IsoflopFit:
    """Chinchilla Approach 2. Runs whose C (6ND unless given) is within log10_tolerance decades
    of a neighbour's form one budget; each budget needs runs at 3 or more model sizes around
    its minimum, and 2 or more budgets are needed."""
    check_bootstrap(num_bootstrap, level)
    N, D, loss = runs(6, N=N, D=D, loss=loss)
    (C,) = runs(len(N), C=6.0 * N * D if C is None else C)
    log_n, log_c = np.log(N), np.log(C)
    groups = budget_groups(log_c, log10_tolerance)
    log_c_B = np.array([log_c[g].mean() for g in groups])
    if len(groups) < 2:
        raise ValueError(f"all runs fall in one compute budget (C~{np.exp(log_c_B[0]):.3g}): "
                         "fitting N* = k C^a needs 2 or more budgets")

    def fit(idx_B: list[np.ndarray]) -> np.ndarray | None:
        minima = [_parabola_min(log_n[i], loss[i]) for i in idx_B]
        if any(m is None for m in minima):
            return None
        log_nopt_B = np.array([m[0] for m in minima])
        return np.concatenate([np.polyfit(log_c_B, log_nopt_B, 1), log_nopt_B])

    loss_opt_B, outside_B = [], []
    for g, log_c_b in zip(groups, log_c_B):
        minimum = _parabola_min(log_n[g], loss[g])
        if minimum is None:
            raise ValueError(f"budget C~{np.exp(log_c_b):.3g} ({np.unique(N[g]).size} model "
                             "sizes): no parabola minimum; run 3 or more sizes on both sides "
                             "of its best one")
        loss_opt_B.append(minimum[1])
        outside_B.append(not log_n[g].min() <= minimum[0] <= log_n[g].max())  # an extrapolated N*
    params = fit(groups)
    samples = bootstrap(fit, groups, num_bootstrap, seed)
    log_dopt = lambda theta: log_c_B - LOG6 - theta[..., 2:]  # noqa: E731
    with np.errstate(over="ignore"):  # k_n (N* at C = 1) of a resample with a wild slope
        return IsoflopFit(
            a=estimate(params[0], samples[:, 0], level),
            b=estimate(1.0 - params[0], 1.0 - samples[:, 0], level),
            k_n=estimate(np.exp(params[1]), np.exp(samples[:, 1]), level),
            k_d=estimate(np.exp(-LOG6 - params[1]), np.exp(-LOG6 - samples[:, 1]), level),
            level=level, budgets=np.exp(log_c_B),
            n_opt=estimate(np.exp(params[2:]), np.exp(samples[:, 2:]), level),
            d_opt=estimate(np.exp(log_dopt(params)), np.exp(log_dopt(samples)), level),
            loss_opt=np.array(loss_opt_B), outside=np.array(outside_B), params=params, samples=samples)


# ---------------------------------------------------------------- Approach 3: parametric L(N, D)


def _terms(theta_PxK: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """(P, 3, *log_n.shape) the log of each term of E + A/N^alpha + B/D^beta for rows
    (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = (theta_PxK[:, i].reshape((-1,) + (1,) * log_n.ndim) for i in range(5))
    return np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e), axis=1)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(r) <= delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))


def _huber_and_grad(theta_K, log_n_R, log_d_R, log_l_R, delta: float) -> tuple[float, np.ndarray]:
    """The objective of one row and its gradient: dHuber/dr = clip(r, +-delta) times the
    softmax weight of each term (logsumexp by hand: scipy's costs more than the rest here)."""
    terms_3xR = _terms(theta_K[None], log_n_R, log_d_R)[0]
    top_R = terms_3xR.max(0)
    w_3xR = np.exp(terms_3xR - top_R)
    total_R = w_3xR.sum(0)
    r_R = top_R + np.log(total_R) - log_l_R
    w_3xR /= total_R
    dr_R = np.clip(r_R, -delta, delta)
    grad = np.array([dr_R @ w_3xR[0], dr_R @ w_3xR[1], dr_R @ w_3xR[2],
                     -(dr_R * w_3xR[0]) @ log_n_R, -(dr_R * w_3xR[1]) @ log_d_R])
    return _huber(r_R, delta).sum(), grad


def _shift(theta_K: np.ndarray, s_n: float, s_d: float) -> np.ndarray:
    """The same law in the coordinates log N + s_n and log D + s_d."""
    a, b, e, alpha, beta = theta_K
    return np.array([a + alpha * s_n, b + beta * s_d, e, alpha, beta])


def _lbfgs(log_n_R, log_d_R, log_l_R, delta: float, starts_PxK: np.ndarray) -> np.ndarray:
    """The best L-BFGS minimum over the starts. It runs on log N and log D centred on their
    means, which decorrelates a from alpha and b from beta (fewer iterations); the tolerances
    are tight because the objective is small (about delta |r| per run)."""
    m_n, m_d = log_n_R.mean(), log_d_R.mean()
    best = None
    for start in starts_PxK:
        sol = optimize.minimize(_huber_and_grad, _shift(start, -m_n, -m_d),
                                args=(log_n_R - m_n, log_d_R - m_d, log_l_R, delta), jac=True,
                                method="L-BFGS-B",
                                options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
        best = sol if best is None or sol.fun < best.fun else best
    return _shift(best.x, m_n, m_d)


def _derived(theta_PxK: np.ndarray) -> dict[str, np.ndarray]:
    a, b, e, alpha, beta = theta_PxK.T
    return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta,
            "a_opt": beta / (alpha + beta), "b_opt": alpha / (alpha + beta)}


@dataclasses.dataclass(frozen=True)
class ChinchillaFit(_ComputeOptimal):
    """L = E + A/N^alpha + B/D^beta; a_opt = beta/(alpha+beta) and b_opt = alpha/(alpha+beta)
    are the exponents of N* and D* in C = 6ND."""
    E: Estimate
    A: Estimate
    B: Estimate
    alpha: Estimate
    beta: Estimate
    a_opt: Estimate
    b_opt: Estimate
    level: float
    params: np.ndarray = dataclasses.field(repr=False, compare=False)   # (a, b, e, alpha, beta)
    samples: np.ndarray = dataclasses.field(repr=False, compare=False)  # (P, 5) bootstrap rows

    def predict(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        return self._predict(self.params[None], N, D)[0]

    def predict_interval(self, N: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return interval(self._predict(self.samples, N, D), self.level)

    @staticmethod
    def _predict(theta_PxK: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        log_n, log_d = np.broadcast_arrays(np.log(np.asarray(N, np.float64)),
                                           np.log(np.asarray(D, np.float64)))
        return np.exp(special.logsumexp(_terms(theta_PxK, log_n, log_d), axis=1))

    @staticmethod
    def _log_n_opt(theta_PxK: np.ndarray, log_c_Q: np.ndarray) -> np.ndarray:
        """argmin over N of A/N^alpha + B/D^beta at D = C/(6N): N* = G (C/6)^a_opt with
        G = (alpha A / (beta B))^(1/(alpha+beta))."""
        a, b, _, alpha, beta = (theta_PxK[:, i, None] for i in range(5))
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        return log_g + beta / (alpha + beta) * (log_c_Q - LOG6)


def fit_chinchilla(N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, delta: float = 1e-3,
                   grid: np.ndarray | None = None, num_starts: int = 8, num_bootstrap: int = 200,
                   level: float = 0.95, seed: int = 0) -> ChinchillaFit:
    """Chinchilla Approach 3. grid: (P, 5) starts (a, b, e, alpha, beta), Hoffmann's by
    default; L-BFGS runs from the num_starts with the lowest objective."""
    check_bootstrap(num_bootstrap, level)
    if delta <= 0 or num_starts < 1:
        raise ValueError(f"delta={delta}, num_starts={num_starts}: need delta > 0 (1e-3 as in "
                         "Hoffmann et al.) and 1 or more starts")
    N, D, loss = runs(6, N=N, D=D, loss=loss)
    for name, col in (("N", N), ("D", D)):
        if np.unique(col).size < 2:
            raise ValueError(f"{name} takes one value: the law's {name} term needs runs at 2 "
                             f"or more {name}")
    grid = HOFFMANN_GRID if grid is None else np.asarray(grid, np.float64)
    if grid.ndim != 2 or grid.shape[1] != 5 or not len(grid):
        raise ValueError(f"grid has shape {grid.shape}: pass rows (a, b, e, alpha, beta)")
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(loss)
    grid_values = _huber(special.logsumexp(_terms(grid, log_n, log_d), axis=1) - log_l,
                         delta).sum(-1)
    starts = grid[np.argsort(grid_values, kind="stable")[:num_starts]]
    params = _lbfgs(log_n, log_d, log_l, delta, starts)
    if params[3] <= 0 or params[4] <= 0:
        raise ValueError(f"fitted alpha={params[3]:.3g}, beta={params[4]:.3g}: loss must fall "
                         "with both N and D; add runs that vary each")

    def fit(idx: list[np.ndarray]) -> np.ndarray | None:
        theta = _lbfgs(log_n[idx[0]], log_d[idx[0]], log_l[idx[0]], delta, params[None])
        return theta if theta[3] > 0 and theta[4] > 0 else None

    samples = bootstrap(fit, [np.arange(len(N))], num_bootstrap, seed)
    point, boot = _derived(params[None]), _derived(samples)
    return ChinchillaFit(**{k: estimate(point[k][0], boot[k], level) for k in point},
                         level=level, params=params, samples=samples)
