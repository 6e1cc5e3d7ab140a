r"""Classical inverse of drug release: weighted nonlinear least squares through the forward solver.

The unknowns :math:`\mathbf x` (a subset of :data:`~core.drug_release.inverse.UNKNOWNS`) are
estimated in log space, :math:`\boldsymbol\theta = \log\mathbf x` within the log bounds, by
minimising

.. math::

   \Phi(\boldsymbol\theta) = \tfrac12 \sum_{s,k,i}
       \Bigl(\frac{\hat c_s(t_k, \mathbf r_i; e^{\boldsymbol\theta}) - c_s^{obs}(t_k, \mathbf r_i)}
                  {\sigma_s}\Bigr)^2,

over the observed species :math:`s` (``"encapsulated"`` and ``"released"``), the imaging
times :math:`t_k` and the **tumour voxels** :math:`\mathbf r_i` (default; ``voxels="all"``
uses the whole grid). The tumour is where the unknowns are defined
(:mod:`core.drug_release.inverse`); host tissue has its own physiology that the scalar
unknowns do not describe. :math:`\hat c` is one forward solve of
:func:`core.drug_release.transport.simulate` (saving only the imaging times) and
:math:`\sigma_s` = :meth:`InverseProblem.noise_sd` the noise SD of species :math:`s` (one
figure for both, or one per species when the carrier and released-drug maps have different
noise: then the better-measured map weighs more, the maximum-likelihood weighting for
independent Gaussian noise). The minimiser is
``scipy.optimize.least_squares`` (trust-region reflective by default, bounds honoured).

Jacobian
--------
Forward finite differences in log space, :math:`\partial\hat c/\partial\theta_j \approx
(\hat c(\boldsymbol\theta + h\mathbf e_j) - \hat c(\boldsymbol\theta))/h`, with the step
``diff_step`` :math:`h` (default 1e-4, a 0.01 % change of the parameter; taken backward at an
upper bound): one forward solve per unknown, the base point reused from the residual
evaluation. The model is smooth in the parameters (linear PDEs, fixed time grid, linear
interpolation to the save times), so the truncation error is :math:`O(h)` relative and the
round-off :math:`O(\epsilon_{mach}/h)`. No adjoint: with at most four unknowns a Jacobian
costs four forward solves (~50 ms each at 24 x 24 voxels and 24 h at dt = 0.05 h), cheaper
to maintain than an adjoint of the BDF2 scheme. When ``vascular_pressure_mmhg`` is not an
unknown, the interstitial pressure is solved once and passed to every forward solve.

Uncertainty
-----------
Gauss-Newton approximation of the covariance of :math:`\boldsymbol\theta` at the optimum,

.. math::

   \mathrm{Cov}(\boldsymbol\theta) \approx s^2 (J^T J)^{-1}, \qquad
   s^2 = \frac{2\Phi}{m - n} \ (\text{reduced } \chi^2),

(Bates & Watts 1988, ch. 2), :math:`m` residuals, :math:`n` unknowns, propagated to the
parameters to first order: :math:`\mathrm{sd}(x_i) = x_i\sqrt{\mathrm{Cov}_{ii}}`. Scaling
by :math:`s^2` absorbs a misstated noise level (and makes the SD tiny on noise-free data);
``extra["std_noise_model"]`` holds the unscaled :math:`(J^TJ)^{-1}` SDs (the Cramér-Rao
bound if the :math:`\sigma_s` are right). :math:`s^2` is one factor for both species: it
corrects a common misstatement of the noise, not a wrong ratio between the species' SDs;
``extra["chi2_reduced_per_species"]`` (each species' :math:`\sum r^2` over its number of
residuals, with its share of the :math:`n` degrees of freedom) shows such a ratio, and
:func:`estimate_noise_sd` turns the residuals of a fit into per-species SDs for a second,
reweighted fit (feasible generalised least squares, Carroll & Ruppert 1988).

**Non-identifiable settings are reported**: the SVD of
:math:`J` gives its condition number; singular values below ``1e-8`` x the largest span
directions the data do not constrain, and every parameter taking part in them (squared
component > 0.01) gets ``std = inf`` with a line in ``extra["warnings"]``; a condition
number above 1e6 (1e12 for :math:`J^TJ`), an estimate on a bound, a relative SD above 50 %
and an optimiser that stopped on ``max_nfev`` are warned about too.

References
----------
.. [1] Bates DM, Watts DG. Nonlinear Regression Analysis and Its Applications. Wiley, 1988.
.. [2] Branch MA, Coleman TF, Li Y. A subspace, interior, and conjugate gradient method for
   large-scale bound-constrained minimization problems. SIAM J Sci Comput 1999;21:1-23.
.. [3] Carroll RJ, Ruppert D. Transformation and Weighting in Regression. Chapman & Hall, 1988.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from core.drug_release.inverse import OBSERVED, InverseProblem, InverseResult, observe, with_parameters
from core.drug_release.pressure import interstitial_pressure
from core.drug_release.transport import MAX_DT_FRACTION, simulate
from core.errors import InputError

__all__ = ["fit_classical", "estimate_noise_sd", "ForwardModel", "SINGULAR_RTOL", "MAX_CONDITION"]

#: Singular values of J below this fraction of the largest are treated as zero (non-identifiable).
SINGULAR_RTOL = 1e-8
#: Condition number of J above which the fit is flagged as ill-conditioned (1e12 for J^T J).
MAX_CONDITION = 1e6
_METHODS = ("trf", "dogbox")
_VOXELS = ("tumour", "all")


def _check_problem(problem, voxels):
    if not isinstance(problem, InverseProblem):
        raise InputError(f"expected an InverseProblem, got {type(problem).__name__}",
                         fix="Build one with core.drug_release.inverse.InverseProblem(...).")
    if voxels not in _VOXELS:
        raise InputError(f"voxels = {voxels!r} is not one of {_VOXELS}", fix="Use 'tumour' or 'all'.")
    mask = np.asarray(problem.grid.tumour, bool) if voxels == "tumour" else np.ones(problem.grid.shape, bool)
    n_res = len(OBSERVED) * problem.times_h.size * int(mask.sum())
    if n_res <= len(problem.unknowns):
        raise InputError(f"{n_res} observations for {len(problem.unknowns)} unknowns (tumour has "
                         f"{int(mask.sum())} voxels)", fix="Give a tumour mask with voxels, or more imaging times.")
    base = problem.base
    rate = float(np.max(np.asarray(base.uptake_per_h) + np.asarray(base.efflux_per_h)))
    krel = dict((u.name, u.bounds[1]) for u in problem.unknowns).get("release_per_h",
                                                                       float(np.max(base.release_per_h)))
    rate = max(rate, krel)
    if rate > 0 and problem.dt_h > MAX_DT_FRACTION / rate * (1 + 1e-12):
        raise InputError(f"dt_h = {problem.dt_h:g} h is too long for reaction rates up to {rate:g} /h "
                         f"(uptake + efflux, or the upper bound of release_per_h)",
                         fix=f"Use dt_h <= {MAX_DT_FRACTION / rate:.3g} h or a lower bound on release_per_h.")
    return mask


class ForwardModel:
    """Scaled residuals of an :class:`InverseProblem` as a function of the log parameters.

    ``residuals(theta)`` runs one forward solve and returns
    :math:`(\\hat c_s - c_s^{obs})/\\sigma_s` over the masked voxels, species ``OBSERVED`` stacked
    (``species_slices`` gives each one's block), times in order, :math:`\\sigma_s` =
    ``problem.noise_sd(s)``. Counts the forward solves; reuses the interstitial pressure when
    ``vascular_pressure_mmhg`` is not an unknown.

    Examples
    --------
    >>> from core.drug_release.inverse_demo import synthetic_problem
    >>> prob, truth = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",), noise_fraction=0.0)
    >>> fm = ForwardModel(prob)
    >>> float(np.abs(fm.residuals(np.log([truth["release_per_h"]]))).max()) < 1e-9
    True
    """

    def __init__(self, problem: InverseProblem, voxels: str = "tumour"):
        self.mask = _check_problem(problem, voxels)
        self.problem = problem
        self.names = problem.names
        self.forward_solves = 0
        self.forward_seconds = 0.0
        self._pressure = (None if "vascular_pressure_mmhg" in self.names
                          else interstitial_pressure(problem.grid, problem.base.fluid))
        self._obs = np.concatenate([np.asarray(problem.observed[s], float)[:, self.mask].ravel() for s in OBSERVED])
        n_each = problem.times_h.size * int(self.mask.sum())
        self.species_slices = {s: slice(i * n_each, (i + 1) * n_each) for i, s in enumerate(OBSERVED)}
        self._sigma = (problem.noise_sd_uM if not isinstance(problem.noise_sd_uM, dict)
                       else np.repeat([problem.noise_sd(s) for s in OBSERVED], n_each))
        self._last = (None, None)

    def params(self, theta) -> dict:
        return {k: float(v) for k, v in zip(self.names, np.exp(np.asarray(theta, float)))}

    def predict(self, theta) -> dict:
        """Predicted observations (``OBSERVED`` -> (n_times, *grid.shape), µM) at ``exp(theta)``."""
        p = self.problem
        t0 = time.perf_counter()
        sol = simulate(p.grid, p.parameters(self.params(theta)), p.plasma, t_end_h=float(p.times_h[-1]),
                       dt_h=p.dt_h, save_times_h=p.times_h, pressure_mmhg=self._pressure)
        self.forward_seconds += time.perf_counter() - t0
        self.forward_solves += 1
        return observe(sol, p.times_h)

    def _scaled(self, pred: dict) -> np.ndarray:
        flat = np.concatenate([pred[s][:, self.mask].ravel() for s in OBSERVED])
        return (flat - self._obs) / self._sigma

    def residuals(self, theta) -> np.ndarray:
        theta = np.asarray(theta, float)
        if self._last[0] is not None and np.array_equal(self._last[0], theta):
            return self._last[1].copy()
        r = self._scaled(self.predict(theta))
        self._last = (theta.copy(), r)
        return r.copy()

    def jacobian(self, theta, step: float, upper) -> np.ndarray:
        """Forward differences in log space (backward where ``theta + step`` passes ``upper``)."""
        theta = np.asarray(theta, float)
        r0 = self.residuals(theta)
        jac = np.empty((r0.size, theta.size))
        for j in range(theta.size):
            h = step if theta[j] + step <= upper[j] else -step
            tj = theta.copy()
            tj[j] += h
            jac[:, j] = (self._scaled(self.predict(tj)) - r0) / h
        return jac


def _covariance(jac: np.ndarray, cost: float, names, values, active, status_nfev: bool) -> tuple:
    """Gauss-Newton covariance in log space, SDs, condition number and warnings."""
    m, n = jac.shape
    warnings = []
    u, s, vt = np.linalg.svd(jac, full_matrices=False)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
    small = s <= SINGULAR_RTOL * s[0] if s[0] > 0 else np.ones(n, bool)
    chi2_red = 2 * cost / (m - n)
    inv_s2 = np.where(small, 0.0, 1.0 / np.where(small, 1.0, s) ** 2)
    cov_unit = (vt.T * inv_s2) @ vt                                   # pseudo-inverse of J^T J
    var_log = np.diag(cov_unit).copy()
    undetermined = np.zeros(n, bool)
    if np.any(small):
        undetermined = np.sum(vt[small] ** 2, axis=0) > 0.01
        var_log[undetermined] = np.inf
        warnings.append("J^T J is singular: the data do not constrain " + ", ".join(
            np.asarray(names)[undetermined]) + " (std = inf); fix them or add data that depend on them")
    elif cond > MAX_CONDITION:
        warnings.append(f"ill-conditioned fit: condition number of J {cond:.3g} (of J^T J {cond ** 2:.3g}); "
                        "the uncertainties are unreliable and the parameters strongly correlated")
    std_log = np.sqrt(var_log * chi2_red)
    std = {k: float(v * sl) for k, v, sl in zip(names, values, std_log)}
    std_noise = {k: float(v * sl) for k, v, sl in zip(names, values, np.sqrt(var_log))}
    for k, a in zip(names, active):
        if a != 0:
            warnings.append(f"{k} ended on its {'lower' if a < 0 else 'upper'} bound: the estimate is censored "
                            "and its std is not a confidence interval")
    for k, v in std.items():
        if np.isfinite(v) and v > 0.5 * abs(values[names.index(k)]):
            warnings.append(f"{k} is poorly constrained: relative std {v / values[names.index(k)]:.0%}")
    if status_nfev:
        warnings.append("the optimiser stopped at max_nfev before converging; raise max_nfev")
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sqrt(np.diag(cov_unit))
        corr = cov_unit / np.outer(d, d)
    corr[undetermined, :] = np.nan
    corr[:, undetermined] = np.nan
    return std, std_noise, cond, chi2_red, corr, warnings


def _dof_fraction(m: int, n: int) -> float:
    """Share of the residuals left after fitting n parameters, 1 - n/m (spread evenly over species)."""
    return 1.0 - n / m


def estimate_noise_sd(problem: InverseProblem, result: InverseResult) -> dict:
    r"""Noise SD of each observed species from the residuals of a classical fit, µM.

    .. math:: \hat\sigma_s = \sqrt{\frac{\sum_{k,i} (\hat c_s - c_s^{obs})^2}{m_s (1 - n/m)}}

    over the voxels the fit used (``result.extra["voxels"]``), :math:`m_s` residuals of
    species :math:`s`, :math:`m` in all and :math:`n` unknowns (the degrees of freedom
    spent by the fit shared in proportion). Use it for a second fit weighted by the
    estimated SDs (feasible generalised least squares, Carroll & Ruppert 1988): fit with one
    SD, estimate, ``dataclasses.replace(problem, noise_sd_uM=sds)``, fit again. It is sound
    when the model fits (residuals are noise): a misfit of the model, a parameter held at a
    wrong value, or a fit that has not converged inflates the estimate of the species it
    affects. Check ``result.extra["warnings"]`` first.

    Parameters
    ----------
    problem : InverseProblem
        The problem that was fitted.
    result : InverseResult
        Its :func:`fit_classical` result (``method="classical"``).

    Returns
    -------
    dict
        Species of :data:`~core.drug_release.inverse.OBSERVED` -> SD, µM; a dict that
        ``InverseProblem(noise_sd_uM=...)`` accepts.

    Examples
    --------
    >>> import dataclasses
    >>> from core.drug_release.inverse_demo import synthetic_problem
    >>> prob, _ = synthetic_problem(12, times_h=(1.0, 4.0), unknowns=("release_per_h",))
    >>> sds = estimate_noise_sd(prob, fit_classical(prob))
    >>> sorted(sds) == sorted(prob.observed)
    True
    >>> refit = fit_classical(dataclasses.replace(prob, noise_sd_uM=sds))
    """
    if not isinstance(result, InverseResult) or result.method != "classical" or "predicted" not in result.extra:
        raise InputError(f"expected a classical InverseResult, got {type(result).__name__}"
                         f"{' of method ' + repr(result.method) if isinstance(result, InverseResult) else ''}",
                         fix="Pass the result of fit_classical(problem).")
    voxels = result.extra.get("voxels", "tumour")
    mask = _check_problem(problem, voxels)
    n = len(result.estimates)
    m = len(OBSERVED) * problem.times_h.size * int(mask.sum())
    out = {}
    for s in OBSERVED:
        pred = np.asarray(result.extra["predicted"][s], float)
        if pred.shape != np.shape(problem.observed[s]):
            raise InputError(f"the result predicts {s} of shape {pred.shape}, the problem observes "
                             f"{np.shape(problem.observed[s])}", fix="Pass the problem that was fitted.")
        r = (pred - np.asarray(problem.observed[s], float))[:, mask]
        sd = float(np.sqrt(np.sum(r ** 2) / (r.size * _dof_fraction(m, n))))
        if not sd > 0:
            raise InputError(f"the residuals of {s} are exactly zero: its noise SD cannot be estimated",
                             fix="Keep the stated noise SD (noise-free data).")
        out[s] = sd
    return out


def fit_classical(problem: InverseProblem, *, method: str = "trf", max_nfev: int = 50, diff_step: float = 1e-4,
                  voxels: str = "tumour", progress: Callable[[int, float], None] | None = None) -> InverseResult:
    r"""Estimate the unknowns of ``problem`` by weighted least squares through the forward solver.

    Parameters
    ----------
    problem : InverseProblem
    method : {"trf", "dogbox"}, default="trf"
        Bounded method of ``scipy.optimize.least_squares``.
    max_nfev : int, default=50
        Most residual evaluations of the optimiser (each one forward solve; a Jacobian costs
        ``len(problem.unknowns)`` more).
    diff_step : float, default=1e-4
        Finite-difference step in log parameter space (relative parameter change), in (0, 0.1].
    voxels : {"tumour", "all"}, default="tumour"
        Voxels whose observations enter the residuals.
    progress : callable, optional
        ``progress(evaluation, cost)`` after each residual evaluation of the optimiser (cost
        = :math:`\Phi`, half the chi-square).

    Returns
    -------
    InverseResult
        ``method="classical"``; ``std`` the Gauss-Newton SDs (module docstring; ``inf`` for
        parameters the data do not constrain); ``history`` the cost :math:`\Phi` of each
        residual evaluation; ``iterations`` the Jacobian evaluations; ``pressure_mmhg`` the
        IFP of the estimates; ``extra``: ``forward_solves``, ``forward_s`` (time in
        forward solves), ``nfev``, ``njev``, ``cost``, ``chi2_reduced``,
        ``chi2_reduced_per_species`` (species -> reduced chi-square of its residuals, ~1 when
        its stated noise SD is right), ``n_residuals``,
        ``condition_number``, ``correlation`` (log-parameter correlation matrix, order of
        ``problem.names``), ``std_noise_model``, ``status``, ``message``, ``predicted``
        (observations of the estimates) and ``warnings`` (list of str).

    Examples
    --------
    >>> from core.drug_release.inverse_demo import synthetic_problem
    >>> prob, truth = synthetic_problem(12, times_h=(1.0, 4.0), unknowns=("release_per_h",), noise_fraction=0.0)
    >>> res = fit_classical(prob)
    >>> abs(res.estimates["release_per_h"] / truth["release_per_h"] - 1) < 1e-3
    True
    """
    if method not in _METHODS:
        raise InputError(f"method = {method!r} is not one of {_METHODS}",
                         fix="Use 'trf' or 'dogbox' (bounded least squares).")
    if isinstance(max_nfev, bool) or not isinstance(max_nfev, (int, np.integer)) or max_nfev < 1:
        raise InputError(f"max_nfev = {max_nfev!r} is not a positive integer", fix="Give e.g. 50.")
    if not (isinstance(diff_step, (int, float)) and 0 < diff_step <= 0.1):
        raise InputError(f"diff_step = {diff_step!r} is not in (0, 0.1]", fix="Give e.g. 1e-4 (log space).")
    if progress is not None and not callable(progress):
        raise InputError(f"progress = {progress!r} is not callable", fix="Give a function (evaluation, cost).")
    t0 = time.perf_counter()
    model = ForwardModel(problem, voxels)
    names = list(problem.names)
    lo = np.log([u.bounds[0] for u in problem.unknowns])
    hi = np.log([u.bounds[1] for u in problem.unknowns])
    theta0 = np.clip(np.log(problem.initial_vector()), lo, hi)
    history = []

    def fun(theta):
        r = model.residuals(theta)
        cost = 0.5 * float(r @ r)
        history.append(cost)
        if progress is not None:
            progress(len(history), cost)
        return r

    res = least_squares(fun, theta0, jac=lambda th: model.jacobian(th, diff_step, hi), bounds=(lo, hi),
                        method=method, x_scale=1.0, max_nfev=int(max_nfev), xtol=1e-10, ftol=1e-10, gtol=1e-10)
    values = np.exp(res.x)
    estimates = {k: float(v) for k, v in zip(names, values)}
    std, std_noise, cond, chi2_red, corr, warnings = _covariance(
        res.jac, float(res.cost), names, values, res.active_mask, res.status == 0)
    fluid = with_parameters(problem.base, estimates).fluid
    pressure = interstitial_pressure(problem.grid, fluid)
    predicted = model.predict(res.x)
    dof = _dof_fraction(res.fun.size, len(names))
    chi2_species = {s: float(np.sum(res.fun[sl] ** 2) / ((sl.stop - sl.start) * dof))
                    for s, sl in model.species_slices.items()}
    extra = {
        "forward_solves": model.forward_solves, "forward_s": model.forward_seconds, "nfev": int(res.nfev),
        "njev": int(res.njev or 0), "cost": float(res.cost), "chi2_reduced": float(chi2_red),
        "chi2_reduced_per_species": chi2_species,
        "n_residuals": int(res.fun.size), "condition_number": cond, "correlation": corr,
        "std_noise_model": std_noise, "status": int(res.status), "message": str(res.message),
        "predicted": predicted, "voxels": voxels, "warnings": warnings,
    }
    return InverseResult(method="classical", estimates=estimates, std=std, wall_s=time.perf_counter() - t0,
                         iterations=int(res.njev or 0), history=np.asarray(history), pressure_mmhg=pressure,
                         extra=extra)
