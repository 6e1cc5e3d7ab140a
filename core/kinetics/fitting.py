r"""Kinetic model fitting: one call for ROI curves and whole-volume parametric maps.

:func:`fit` estimates the parameters of a compartment model (1TCM, irreversible and
reversible 2TCM, SRTM) or a graphical analysis (Patlak, Logan) from tissue time-activity
curves of any batch shape ``(..., T)``. Times are minutes, rate constants 1/min, ``K1``
ml/cm3/min, volumes of distribution ml/cm3 (unit tissue density), ``vB`` unitless.

Plasma-input models
-------------------
The measured frame average of voxel or region :math:`n` is compared with the frame
average of the model (Innis et al. 2007 notation)

.. math::

    \bar C_\mathrm{PET}(f) = (1 - v_B)\,\overline{(C_P \otimes h)}(f) + v_B\,\bar C_B(f),
    \qquad h(t) = \sum_i \phi_i e^{-\alpha_i t},

with :math:`C_B` the whole-blood curve (the plasma curve when none is given) and the
impulse response :math:`h` of :mod:`core.kinetics.compartment`:

* ``"1tcm"``: :math:`h = K_1 e^{-k_2 t}`; outputs ``K1, k2, vB, VT`` (:math:`V_T = K_1/k_2`).
* ``"2tcm_irr"``: :math:`k_4 = 0`; outputs ``K1, k2, k3, vB, Ki``
  (:math:`K_i = K_1 k_3/(k_2 + k_3)`, Phelps et al. 1979).
* ``"2tcm"``: outputs ``K1, k2, k3, k4, vB, VT, VND, BPND``
  (:math:`V_T = \frac{K_1}{k_2}(1 + \frac{k_3}{k_4})`).

Reference-tissue model
----------------------
``"srtm"`` (Lammertsma & Hume 1996): with the reference-region curve :math:`C_R`,

.. math::

    C_T(t) = R_1 C_R(t) + \left(k_2 - \frac{R_1 k_2}{1 + BP_{ND}}\right)
             C_R(t) \otimes e^{-k_2 t/(1 + BP_{ND})};

outputs ``R1, k2, BPND`` and ``k2a`` (:math:`k_2/(1 + BP_{ND})`). The reference curve is
given as frame averages; for the convolution it is joined linearly through
:math:`(0, 0)` and the frame mid-times and held at its last value to the end of the scan
(the usual implementation), while the :math:`R_1 C_R` term uses the measured averages.

Estimation
----------
Weighted non-linear least squares, :math:`\min \sum_f w_f (\bar C_f - \bar C_f^\mathrm{model})^2`
with frame weights proportional to frame duration by default (counts in a
decay-corrected frame grow with its length; a common choice, e.g. PMOD and Gunn et al.
2002), batched over all curves in torch:

1. Start values by the basis-function method (Gunn et al. 1997 for SRTM; Hong & Fryer
   2010 for plasma-input models): for each rate on a grid, the model is linear in the
   remaining parameters, which are solved by least squares for every curve at once; the
   grid point with the lowest cost and physically valid amplitudes is kept.
2. Levenberg-Marquardt (Marquardt 1963) from there, with analytic Jacobians (chain rule
   through :math:`\phi_i, \alpha_i`) and bounds enforced by projection. The convolution
   :math:`\overline{C \otimes e^{-\alpha t}}` and its derivative in :math:`\alpha` are read
   from an exact, spline-interpolated table (:mod:`core.kinetics._basis`).

A curve's fit is ``ok`` when the curve is finite and not flat and Levenberg-Marquardt
converged within ``max_iter`` iterations; failed curves get ``ok = False`` and NaN
parameters, never an exception. ``rss`` is the weighted residual sum of squares in the
curve's squared unit (weights normalised to mean one).

Graphical analyses (``"patlak"``, ``"logan"``) are in :mod:`core.kinetics.graphical`.

References
----------
Innis RB, Cunningham VJ, Delforge J, et al. Consensus nomenclature for in vivo imaging of
reversibly binding radioligands. J Cereb Blood Flow Metab 2007;27:1533-1539.
Lammertsma AA, Hume SP. Simplified reference tissue model for PET receptor studies.
NeuroImage 1996;4:153-158.
Gunn RN, Lammertsma AA, Hume SP, Cunningham VJ. Parametric imaging of ligand-receptor
binding in PET using a simplified reference region model. NeuroImage 1997;6:279-287.
Hong YT, Fryer TD. Kinetic modelling using basis functions derived from two-tissue
compartmental models with a plasma input function. NeuroImage 2010;51:164-172.
Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters. J Soc
Ind Appl Math 1963;11:431-441.
Bertsekas DP. Projected Newton methods for optimization problems with simple
constraints. SIAM J Control Optim 1982;20:221-246.
Phelps ME, Huang SC, Hoffman EJ, et al. Ann Neurol 1979;6:371-388.

Examples
--------
>>> import numpy as np
>>> from core.kinetics.compartment import two_tissue_tac
>>> t = np.linspace(0.0, 30.0, 601)
>>> cp = 1000.0 * t * np.exp(-t / 0.8) + 50.0 * (t > 0)
>>> fs, fe = np.arange(0.0, 30.0, 2.0), np.arange(2.0, 32.0, 2.0)
>>> tac = two_tissue_tac(t, cp, 0.1, 0.15, 0.05, 0.0, vB=0.05, frame_start_min=fs, frame_end_min=fe)
>>> out = fit("2tcm_irr", tac, fs, fe, input_time=t, input_conc=cp)
>>> round(float(out["Ki"]), 4), bool(out["ok"])
(0.025, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from core.errors import InputError, TimingError
from core.kinetics._basis import ExponentialTable
from core.kinetics.compartment import frame_average

__all__ = ["fit", "predict", "MODELS", "PARAMETERS", "DEFAULT_BOUNDS", "check_frames"]

#: Models :func:`fit` knows, with the parameters it estimates (in this order).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "1tcm": ("K1", "k2", "vB"),
    "2tcm_irr": ("K1", "k2", "k3", "vB"),
    "2tcm": ("K1", "k2", "k3", "k4", "vB"),
    "srtm": ("R1", "k2", "BPND"),
    "patlak": ("Ki", "intercept"),
    "logan": ("VT", "intercept"),
}
MODELS = tuple(PARAMETERS)

#: Default bounds (lower, upper). Rate constants 1/min, K1 ml/cm3/min. Wide enough for
#: amino-acid tracers in brain tumours (K1 up to ~0.5, k2 up to ~1 in washout lesions)
#: and blood-rich voxels; narrower bounds can be passed to :func:`fit`.
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "K1": (0.0, 2.0),
    "k2": (1e-4, 2.0),
    "k3": (0.0, 1.0),
    "k4": (0.0, 0.5),
    "vB": (0.0, 0.8),
    "R1": (0.0, 10.0),
    "BPND": (-0.5, 20.0),
}

_DEFAULT_MAX_ITER = 200
_CHUNK = 32768


# ------------------------------------------------------------------- boundary checks


def check_frames(frame_start, frame_end) -> tuple[np.ndarray, np.ndarray]:
    """Frame starts and ends in minutes: 1D, finite, ordered, not overlapping.

    Raises
    ------
    TimingError
        Naming the first offending frame.
    """
    fs = np.atleast_1d(np.asarray(frame_start, dtype=float))
    fe = np.atleast_1d(np.asarray(frame_end, dtype=float))
    if fs.ndim != 1 or fs.shape != fe.shape or fs.size < 2:
        raise TimingError(f"frame starts {fs.shape} and ends {fe.shape} must be 1D arrays of equal length >= 2 (minutes)")
    if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(fe))):
        raise TimingError("frame times hold NaN or infinite values", fix="Check the frame timing of the PET series.")
    bad = (fs < 0) | (fe <= fs)
    if bad.any():
        j = int(np.argmax(bad))
        raise TimingError(f"frame {j} runs from {fs[j]:.4g} to {fe[j]:.4g} min; a frame must start at or after "
                          "injection and end after it starts")
    order = fs[1:] < fe[:-1] - 1e-9
    if order.any():
        j = int(np.argmax(order))
        raise TimingError(f"frames are out of order or overlap: frame {j + 1} starts at {fs[j + 1]:.4g} min, before "
                          f"frame {j} ends at {fe[j]:.4g} min", fix="Sort the frames by start time.")
    return fs, fe


def _check_model(model: str) -> str:
    name = str(model).strip().lower()
    if name not in PARAMETERS:
        raise InputError(f"unknown kinetic model {model!r}", fix=f"Use one of {', '.join(MODELS)}.")
    return name


def _check_tac(tac, n_frames: int) -> np.ndarray:
    y = np.asarray(tac, dtype=float)
    if y.ndim == 0 or y.shape[-1] != n_frames:
        raise InputError(f"the TAC array has shape {y.shape}, but its last axis must be the {n_frames} frames",
                         fix="Pass curves of shape (..., n_frames) in the order of the frame times.")
    return y


def _check_input(input_time, input_conc, fe: np.ndarray, what: str = "input function"):
    if input_time is None or input_conc is None:
        raise InputError(f"this model needs an {what}: pass input_time (min) and input_conc",
                         fix="Choose an image-derived, population or measured input function.")
    t = np.asarray(input_time, dtype=float)
    c = np.asarray(input_conc, dtype=float)
    if t.ndim != 1 or c.shape != t.shape or t.size < 3:
        raise InputError(f"the {what} needs matching 1D time and concentration arrays of at least 3 samples, "
                         f"got {t.shape} and {c.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(c))):
        raise InputError(f"the {what} holds NaN or infinite values", fix="Remove or repair those samples.")
    if np.any(np.diff(t) <= 0) or t[0] < 0:
        raise TimingError(f"the {what} times must start at or after injection and increase strictly",
                          fix="Sort the samples and remove duplicate times.")
    if t[-1] < fe[-1] - 1e-6:
        raise TimingError(f"the {what} ends at {t[-1]:.4g} min but the scan runs to {fe[-1]:.4g} min",
                          fix="Give an input function sampled to the end of the last frame.")
    if np.any(c < 0):
        raise InputError(f"the {what} holds negative concentrations (min {c.min():.4g})")
    if not np.any(c > 0):
        raise InputError(f"the {what} is zero everywhere")
    return t, c


def _check_bounds(names: tuple[str, ...], bounds: Mapping[str, tuple[float, float]] | None):
    bounds = dict(bounds or {})
    unknown = set(bounds) - set(names)
    if unknown:
        raise InputError(f"bounds given for {sorted(unknown)}, which the model does not have",
                         fix=f"The model's parameters are {', '.join(names)}.")
    lo, hi = [], []
    for name in names:
        a, b = (float(v) for v in bounds.get(name, DEFAULT_BOUNDS[name]))
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise InputError(f"the bounds of {name} must be finite with lower < upper, got ({a}, {b})")
        if name in ("K1", "k2", "k3", "k4", "vB", "R1") and a < 0:
            raise InputError(f"{name} cannot be negative; lower bound {a}")
        if name == "vB" and b >= 1:
            raise InputError(f"vB must stay below 1, upper bound {b}")
        if name == "BPND" and a <= -1:
            raise InputError(f"BPND must stay above -1, lower bound {a}")
        lo.append(a)
        hi.append(b)
    return np.array(lo), np.array(hi)


def _weights(weights, fs: np.ndarray, fe: np.ndarray) -> np.ndarray:
    if weights is None or (isinstance(weights, str) and weights == "uniform"):
        w = np.ones_like(fs)
    elif isinstance(weights, str) and weights == "duration":
        w = fe - fs
    elif isinstance(weights, str):
        raise InputError(f"unknown weighting {weights!r}", fix="Use 'duration', 'uniform' or an array of frame weights.")
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != fs.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise InputError(f"frame weights must be {fs.size} finite non-negative numbers, not all zero")
    return w / w.mean()


# ------------------------------------------------------------------- model terms


def _two_tissue_terms(K1, k2, k3, k4):
    """Amplitudes and rates of the 2TCM impulse response and their derivatives.

    Returns phi, alpha of shape (N, 2) and dphi, dalpha of shape (N, 2, 4), derivatives
    with respect to (K1, k2, k3, k4). See the module docstring of
    :mod:`core.kinetics.compartment` for :math:`\\alpha_{1,2}` and :math:`\\phi_{1,2}`.
    """
    s = k2 + k3 + k4
    D = torch.sqrt(torch.clamp(s * s - 4.0 * k2 * k4, min=0.0)).clamp(min=1e-9)
    a1 = 2.0 * k2 * k4 / (s + D).clamp(min=1e-30)
    a2 = s - a1
    dD = torch.stack([torch.zeros_like(D), (s - 2.0 * k4) / D, s / D, (s - 2.0 * k2) / D], dim=-1)
    one = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=K1.dtype, device=K1.device)
    da1 = 0.5 * (one - dD)
    da2 = 0.5 * (one + dD)
    e_k2 = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=K1.dtype, device=K1.device)
    g1, g2 = a2 - k2, k2 - a1
    dg1, dg2 = da2 - e_k2, e_k2 - da1
    Dc = D.unsqueeze(-1)
    e_K1 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=K1.dtype, device=K1.device)
    dphi1 = K1.unsqueeze(-1) * (dg1 * Dc - g1.unsqueeze(-1) * dD) / (Dc * Dc) + e_K1 * (g1 / D).unsqueeze(-1)
    dphi2 = K1.unsqueeze(-1) * (dg2 * Dc - g2.unsqueeze(-1) * dD) / (Dc * Dc) + e_K1 * (g2 / D).unsqueeze(-1)
    phi = torch.stack([K1 * g1 / D, K1 * g2 / D], dim=-1)
    alpha = torch.stack([a1, a2], dim=-1)
    return phi, alpha, torch.stack([dphi1, dphi2], dim=1), torch.stack([da1, da2], dim=1)


def _plasma_model(phi, alpha, dphi, dalpha, vB, ctx: "_Context", jac: bool):
    """Frame-averaged model and Jacobian of (1 - vB) sum_i phi_i F(alpha_i) + vB B.

    ``dphi``/``dalpha`` (N, E, P-1) are derivatives with respect to all parameters but vB,
    which comes last. The Jacobian is returned parameter-major, shape (N, P, T), so each
    parameter's row is contiguous.
    """
    Fs, dFs = [], []
    for e in range(phi.shape[1]):
        F, dF = ctx.table.evaluate(alpha[:, e], derivative=jac)
        Fs.append(F)
        dFs.append(dF)
    tissue = Fs[0] * phi[:, :1]
    for e in range(1, len(Fs)):
        tissue = tissue.addcmul_(Fs[e], phi[:, e:e + 1])
    v = vB.unsqueeze(-1)
    model = torch.lerp(tissue, ctx.blood.expand_as(tissue), v)  # (1 - vB) tissue + vB blood
    if not jac:
        return model, None
    # d tissue / d theta_p = sum_e dphi_e/dp F_e + phi_e dalpha_e/dp F'_e: one small
    # batched product (P-1, 2E) @ (2E, T) per curve
    G = torch.stack(Fs + [dFs[e] * phi[:, e:e + 1] for e in range(len(Fs))], dim=1)  # (N, 2E, T)
    H = torch.cat([dphi, dalpha], dim=1).transpose(1, 2)  # (N, P-1, 2E)
    J = torch.cat([torch.bmm(H, G).mul_((1.0 - v).unsqueeze(1)), (ctx.blood - tissue).unsqueeze(1)], dim=1)
    return model, J


@dataclass
class _Context:
    table: ExponentialTable
    blood: torch.Tensor  # (T,) frame-averaged whole blood (plasma-input models)
    reference: torch.Tensor | None = None  # (T,) measured reference averages (SRTM)


def _predict_1tcm(p, ctx, jac=True):
    K1, k2, vB = p.unbind(-1)
    phi = K1.unsqueeze(-1)
    alpha = k2.unsqueeze(-1)
    z = torch.zeros_like(K1)
    dphi = torch.stack([torch.ones_like(K1), z], dim=-1).unsqueeze(1)
    dalpha = torch.stack([z, torch.ones_like(K1)], dim=-1).unsqueeze(1)
    return _plasma_model(phi, alpha, dphi, dalpha, vB, ctx, jac)


def _predict_2tcm_irr(p, ctx, jac=True):
    K1, k2, k3, vB = p.unbind(-1)
    phi, alpha, dphi, dalpha = _two_tissue_terms(K1, k2, k3, torch.zeros_like(K1))
    return _plasma_model(phi, alpha, dphi[..., :3], dalpha[..., :3], vB, ctx, jac)


def _predict_2tcm(p, ctx, jac=True):
    K1, k2, k3, k4, vB = p.unbind(-1)
    phi, alpha, dphi, dalpha = _two_tissue_terms(K1, k2, k3, k4)
    return _plasma_model(phi, alpha, dphi, dalpha, vB, ctx, jac)


def _predict_srtm(p, ctx, jac=True):
    R1, k2, bp = p.unbind(-1)
    q = 1.0 + bp
    k2a = k2 / q
    F, dF = ctx.table.evaluate(k2a, derivative=jac)
    amp = (k2 - R1 * k2a).unsqueeze(-1)
    model = R1.unsqueeze(-1) * ctx.reference + amp * F
    if not jac:
        return model, None
    dk2a_dk2 = (1.0 / q).unsqueeze(-1)
    dk2a_dbp = (-k2 / (q * q)).unsqueeze(-1)
    d_R1 = ctx.reference - k2a.unsqueeze(-1) * F
    d_k2 = (1.0 - R1.unsqueeze(-1) * dk2a_dk2) * F + amp * dF * dk2a_dk2
    d_bp = -R1.unsqueeze(-1) * dk2a_dbp * F + amp * dF * dk2a_dbp
    return model, torch.stack([d_R1, d_k2, d_bp], dim=1)


_PREDICT = {"1tcm": _predict_1tcm, "2tcm_irr": _predict_2tcm_irr, "2tcm": _predict_2tcm, "srtm": _predict_srtm}


# ------------------------------------------------------------ basis-function start


def _rate_grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.geomspace(max(lo, 1e-4), hi, n)


def _bases(model: str, ctx: _Context, lo: np.ndarray, hi: np.ndarray):
    """Candidate rate sets and their design matrices (B, T, q) for the linear sub-problem."""
    dev, dt = ctx.blood.device, ctx.blood.dtype
    F = lambda th: ctx.table.evaluate(torch.as_tensor(th, dtype=dt, device=dev), derivative=False)[0]  # noqa: E731
    if model == "1tcm":
        rates = _rate_grid(lo[1], hi[1], 48)
        Fr = F(rates)
        A = torch.stack([Fr, ctx.blood.expand_as(Fr)], dim=-1)
        return rates[:, None], A
    if model == "2tcm_irr":
        rates = _rate_grid(lo[1] + lo[2], hi[1] + hi[2], 48)
        Fr = F(rates)
        F0 = F(np.zeros(1)).expand_as(Fr)
        A = torch.stack([F0, Fr, ctx.blood.expand_as(Fr)], dim=-1)
        return np.stack([np.zeros_like(rates), rates], axis=-1), A
    if model == "2tcm":
        grid = _rate_grid(1e-4, hi[1] + hi[2] + hi[3], 16)
        i, j = np.triu_indices(grid.size, k=1)
        pairs = np.stack([grid[i], grid[j]], axis=-1)
        A = torch.stack([F(pairs[:, 0]), F(pairs[:, 1]), ctx.blood.expand(len(pairs), -1)], dim=-1)
        return pairs, A
    # srtm: k2a = k2 / (1 + BPND)
    rates = _rate_grid(lo[1] / (1.0 + hi[2]), min(hi[1] / (1.0 + lo[2]), ctx.table.theta_max), 48)
    Fr = F(rates)
    A = torch.stack([ctx.reference.expand_as(Fr), Fr], dim=-1)
    return rates[:, None], A


def _to_parameters(model: str, rates: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model parameters from basis rates and linear coefficients, and which are valid."""
    if model == "srtm":
        R1, b = coef[:, 0], coef[:, 1]
        th = rates[:, 0]
        k2 = b + R1 * th
        bp = k2 / th - 1.0
        return torch.stack([R1, k2, bp], dim=-1), (R1 > 0) & (k2 > 0)
    vB = coef[:, -1]
    scale = (1.0 - vB).clamp(min=1e-6)
    if model == "1tcm":
        K1 = coef[:, 0] / scale
        return torch.stack([K1, rates[:, 0], vB], dim=-1), (coef[:, 0] > 0) & (vB >= 0) & (vB < 1)
    phi1, phi2 = coef[:, 0] / scale, coef[:, 1] / scale
    a1, a2 = rates[:, 0], rates[:, 1]
    K1 = phi1 + phi2
    valid = (phi1 >= 0) & (phi2 > 0) & (vB >= 0) & (vB < 1)
    Ks = K1.clamp(min=1e-30)
    if model == "2tcm_irr":  # alpha1 = 0: phi1 = K1 k3 / (k2 + k3), alpha2 = k2 + k3
        k3 = a2 * phi1 / Ks
        k2 = a2 - k3
        return torch.stack([K1, k2, k3, vB], dim=-1), valid
    k2 = (phi1 * a1 + phi2 * a2) / Ks
    k4 = a1 * a2 / k2.clamp(min=1e-30)
    k3 = a1 + a2 - k2 - k4
    return torch.stack([K1, k2, k3.clamp(min=0.0), k4, vB], dim=-1), valid


def _basis_start(model: str, y: torch.Tensor, sw: torch.Tensor, ctx: _Context, lo, hi) -> torch.Tensor:
    """Start values: best valid basis (linear least squares per candidate rate set)."""
    rates_np, A = _bases(model, ctx, lo, hi)
    Aw = A * sw.unsqueeze(-1)
    Q, R = torch.linalg.qr(Aw)
    Rinv = torch.linalg.inv(R)  # (B, q, q)
    yw = y * sw
    yy = (yw * yw).sum(-1)
    n = y.shape[0]
    best = torch.full((n,), math.inf, dtype=y.dtype, device=y.device)
    best_idx = torch.zeros(n, dtype=torch.long, device=y.device)
    best_coef = torch.zeros((n, A.shape[-1]), dtype=y.dtype, device=y.device)
    rates = torch.as_tensor(rates_np, dtype=y.dtype, device=y.device)
    for b in range(A.shape[0]):
        proj = yw @ Q[b]
        coef = proj @ Rinv[b].T
        _, valid = _to_parameters(model, rates[b].expand(n, -1), coef)
        rss = torch.where(valid, yy - (proj * proj).sum(-1), math.inf)
        better = rss < best
        best = torch.where(better, rss, best)
        best_idx = torch.where(better, b, best_idx)
        best_coef = torch.where(better.unsqueeze(-1), coef, best_coef)
    p, _ = _to_parameters(model, rates[best_idx], best_coef)
    fallback = torch.as_tensor(_fallback_start(model, lo, hi), dtype=y.dtype, device=y.device)
    p = torch.where(torch.isfinite(best).unsqueeze(-1) & torch.isfinite(p), p, fallback)
    lo_t = torch.as_tensor(lo, dtype=y.dtype, device=y.device)
    hi_t = torch.as_tensor(hi, dtype=y.dtype, device=y.device)
    margin = 1e-6 * (hi_t - lo_t)
    return torch.minimum(torch.maximum(p, lo_t + margin), hi_t - margin)


def _fallback_start(model: str, lo, hi) -> np.ndarray:
    typical = {"1tcm": [0.05, 0.1, 0.05], "2tcm_irr": [0.05, 0.1, 0.02, 0.05],
               "2tcm": [0.05, 0.1, 0.02, 0.01, 0.05], "srtm": [1.0, 0.1, 0.5]}[model]
    return np.clip(typical, lo, hi)


# ------------------------------------------------------------ Levenberg-Marquardt


def _levenberg_marquardt(predict, p, y, w, ctx, lo, hi, max_iter: int, ftol: float = 1.49e-8,
                         xtol: float = 1.49e-8):
    """Bounded, batched Levenberg-Marquardt.

    Stops a curve when an accepted step lowers the cost by less than ``ftol`` (relative) or
    moves every parameter by less than ``xtol`` (relative), the defaults of MINPACK's
    ``lmdif`` that :func:`scipy.optimize.curve_fit` uses; or when the damping grows past
    1e12 (no downhill step exists within the bounds). Curves still running after
    ``max_iter`` iterations are not converged. Finished curves leave the working set, so
    late iterations cost only what is still running.

    Returns parameters, cost, converged flags and iteration counts.
    """
    n, P = p.shape
    eps = torch.finfo(p.dtype).eps
    ftol, xtol = max(ftol, 8.0 * eps), max(xtol, 8.0 * eps)
    lo = torch.as_tensor(lo, dtype=p.dtype, device=p.device)
    hi = torch.as_tensor(hi, dtype=p.dtype, device=p.device)
    out_p, out_rss = p.clone(), torch.full((n,), math.inf, dtype=p.dtype, device=p.device)
    converged = torch.zeros(n, dtype=torch.bool, device=p.device)
    n_iter = torch.full((n,), max_iter, dtype=torch.int32, device=p.device)
    floor = (eps * eps) * (w * y * y).sum(-1)
    m, J = predict(p, ctx)
    r = y - m
    rss = (w * r * r).sum(-1)
    lam = torch.full((n,), 1e-3, dtype=p.dtype, device=p.device)
    ids = torch.arange(n, device=p.device)
    tiny = 1e-9 * (hi - lo)
    for it in range(max_iter):
        JW = J * w  # (N, P, T)
        A = torch.bmm(JW, J.transpose(1, 2))
        g = torch.bmm(JW, r.unsqueeze(-1)).squeeze(-1)
        # parameters held at a bound by a descent direction pointing out of the box are
        # frozen for this step (projected Newton, Bertsekas 1982): the step is solved in
        # the free subspace, so a curve with, e.g., k4 = 0 does not crawl along the bound
        held = ((p <= lo + tiny) & (g < 0)) | ((p >= hi - tiny) & (g > 0))
        free = (~held).to(p.dtype)
        A = A * free.unsqueeze(-1) * free.unsqueeze(-2) + torch.diag_embed(1.0 - free)
        g = g * free
        d = A.diagonal(dim1=1, dim2=2)
        damp = lam.unsqueeze(-1) * (d + eps * d.amax(-1, keepdim=True) + torch.finfo(p.dtype).tiny)
        step = torch.linalg.solve(A + torch.diag_embed(damp), g.unsqueeze(-1)).squeeze(-1)
        pn = torch.minimum(torch.maximum(p + torch.nan_to_num(step), lo), hi)
        mn, Jn = predict(pn, ctx)
        rn = y - mn
        rssn = (w * rn * rn).sum(-1)
        better = rssn < rss
        small_f = better & (rss - rssn <= ftol * rss)
        small_x = better & ((pn - p).abs() <= xtol * (p.abs() + tiny)).all(-1)
        done = small_f | small_x | (rssn <= floor) | (lam > 1e12)
        b = better.unsqueeze(-1)
        p = torch.where(b, pn, p)
        J = torch.where(b.unsqueeze(-1), Jn, J)
        r = torch.where(b, rn, r)
        rss = torch.where(better, rssn, rss)
        lam = torch.where(better, (lam * 0.3).clamp(min=1e-12), lam * 10.0)
        if done.any():
            fin = ids[done]
            out_p[fin], out_rss[fin], converged[fin] = p[done], rss[done], True
            n_iter[fin] = it + 1
            keep = ~done
            p, J, r, rss, lam, y, ids, floor = (a[keep] for a in (p, J, r, rss, lam, y, ids, floor))
            if ids.numel() == 0:
                break
    if ids.numel():
        out_p[ids], out_rss[ids] = p, rss
    return out_p, out_rss, converged, n_iter


# ------------------------------------------------------------------- entry point


def _reference_curve(reference, fs: np.ndarray, fe: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=float)
    if ref.shape != fs.shape:
        raise InputError(f"the reference TAC has shape {ref.shape}; it must have one value per frame ({fs.size})")
    if not np.all(np.isfinite(ref)):
        raise InputError("the reference-region TAC holds NaN or infinite values",
                         fix="Check the reference mask lies inside the image and the brain.")
    if not np.any(ref > 0):
        raise InputError("the reference-region TAC is zero everywhere", fix="Choose a reference region with uptake.")
    mid = 0.5 * (fs + fe)
    t = np.concatenate([[0.0], mid, [fe[-1]]]) if mid[0] > 0 else np.concatenate([mid, [fe[-1]]])
    c = np.concatenate([[0.0], ref, [ref[-1]]]) if mid[0] > 0 else np.concatenate([ref, [ref[-1]]])
    return t, c, ref


def _torch_device(device) -> torch.device:
    if device is None:
        from core.config import device as configured

        return configured()
    return torch.device(device)


def fit(model: str, tac, frame_start, frame_end, input_time=None, input_conc=None, reference=None, device=None, *,
        blood=None, weights="duration", bounds: Mapping[str, tuple[float, float]] | None = None,
        t_star: float | None = None, k2_ref: float | None = None, max_iter: int = _DEFAULT_MAX_ITER,
        dtype: torch.dtype | None = None, chunk_size: int = _CHUNK, progress=None) -> dict[str, np.ndarray]:
    r"""Fit a kinetic model to time-activity curves of any batch shape.

    Parameters
    ----------
    model : {"1tcm", "2tcm_irr", "2tcm", "srtm", "patlak", "logan"}
    tac : array-like of shape (..., T)
        Frame-averaged tissue curves (one unit, e.g. Bq/ml or SUV, shared with the input).
        Non-finite curves are reported as failed (``ok = False``), not raised.
    frame_start, frame_end : array-like of shape (T,)
        Frame times in minutes from injection.
    input_time, input_conc : array-like of shape (n,), optional
        Arterial plasma input on its own time grid (minutes); needed by the plasma-input
        models and the plasma forms of Patlak and Logan. It must reach the end of the scan.
    reference : array-like of shape (T,), optional
        Reference-region TAC (frame averages): needed by SRTM; turns Patlak and Logan into
        their reference forms (Logan gives ``DVR``).
    device : str or torch.device, optional
        Default :func:`core.config.device` (CUDA when available).
    blood : array-like of shape (n,), optional
        Whole-blood activity on ``input_time`` for the :math:`v_B` term; the plasma curve
        when omitted.
    weights : {"duration", "uniform"} or array-like of shape (T,), default="duration"
    bounds : dict of str to (float, float), optional
        Overrides of :data:`DEFAULT_BOUNDS` for this model's parameters.
    t_star : float, optional
        Start of the linear phase for Patlak and Logan, minutes (see
        :func:`core.kinetics.graphical.patlak`).
    k2_ref : float, optional
        Reference-region efflux :math:`k_2'` (1/min) for reference Logan.
    max_iter : int, default=200
        Levenberg-Marquardt iterations per curve.
    dtype : torch.dtype, optional
        Default float64 on CPU, float32 on CUDA.
    chunk_size : int, default=32768
        Curves fitted together; memory grows with it (the Jacobian alone holds
        ``chunk_size * T * n_parameters`` values).
    progress : callable(fraction, message), optional

    Returns
    -------
    dict of str to ndarray of shape ``tac.shape[:-1]``
        The model's parameters and derived quantities (see the module docstring), ``rss``,
        ``ok`` (bool) and, for compartment models, ``n_iter`` (Levenberg-Marquardt
        iterations used).

    Raises
    ------
    InputError
        Unknown model, wrong shapes, missing or invalid input function or reference.
    TimingError
        Frames out of order or an input function that ends before the scan.
    """
    name = _check_model(model)
    fs, fe = check_frames(frame_start, frame_end)
    y_all = _check_tac(tac, fs.size)
    if name in ("patlak", "logan"):
        from core.kinetics.graphical import logan, patlak

        if reference is None:
            t, c = _check_input(input_time, input_conc, fe)
            ref_args = {"input_time": t, "input_conc": c}
        else:
            ref_args = {"reference": _reference_curve(reference, fs, fe)[2]}
        if name == "patlak":
            return patlak(y_all, fs, fe, t_star=t_star, weights=weights, **ref_args)
        return logan(y_all, fs, fe, t_star=t_star, k2_ref=k2_ref, weights=weights, **ref_args)

    names = PARAMETERS[name]
    lo, hi = _check_bounds(names, bounds)
    dev = _torch_device(device)
    dt = dtype or (torch.float64 if dev.type == "cpu" else torch.float32)
    if name == "srtm":
        if reference is None:
            raise InputError("SRTM needs a reference-region TAC", fix="Pass reference= (for example the contralateral "
                             "background or the cerebellum curve).")
        rt, rc, ref = _reference_curve(reference, fs, fe)
        theta_max = hi[1] / (1.0 + lo[2]) * 1.01
        table = ExponentialTable.build(rt, rc, fs, fe, theta_max=theta_max, device=dev, dtype=dt)
        ctx = _Context(table, table.input_average, torch.tensor(np.array(ref, dtype=float), dtype=dt, device=dev))
    else:
        t, c = _check_input(input_time, input_conc, fe)
        theta_max = float(sum(hi[1:len(names) - 1])) * 1.01
        table = ExponentialTable.build(t, c, fs, fe, theta_max=theta_max, device=dev, dtype=dt)
        if blood is not None:
            _, b = _check_input(t, blood, fe, what="whole-blood curve")
            blood_avg = ExponentialTable.build(t, b, fs, fe, theta_max=0.1, n_nodes=4, device=dev,
                                               dtype=dt).input_average
        else:
            blood_avg = table.input_average
        ctx = _Context(table, blood_avg)

    batch = y_all.shape[:-1]
    y_flat = y_all.reshape(-1, fs.size)
    n = y_flat.shape[0]
    finite = np.all(np.isfinite(y_flat), axis=-1)
    flat = np.ptp(np.where(np.isfinite(y_flat), y_flat, 0.0), axis=-1) <= 1e-12 * np.abs(y_flat).max(axis=-1, initial=0)
    fittable = finite & ~flat
    w = torch.as_tensor(_weights(weights, fs, fe), dtype=dt, device=dev)
    sw = torch.sqrt(w)
    params = np.full((n, len(names)), np.nan)
    rss = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    n_iter = np.zeros(n, dtype=np.int32)
    idx = np.flatnonzero(fittable)
    predict = _PREDICT[name]
    for start in range(0, idx.size, chunk_size):
        sel = idx[start:start + chunk_size]
        y = torch.as_tensor(y_flat[sel], dtype=dt, device=dev)
        p0 = _basis_start(name, y, sw, ctx, lo, hi)
        p, r, conv, iters = _levenberg_marquardt(predict, p0, y, w, ctx, lo, hi, max_iter)
        p_np = p.cpu().double().numpy()
        good = conv.cpu().numpy() & np.all(np.isfinite(p_np), axis=-1)
        params[sel] = np.where(good[:, None], p_np, np.nan)
        rss[sel] = np.where(good, r.cpu().double().numpy(), np.nan)
        ok[sel] = good
        n_iter[sel] = iters.cpu().numpy()
        if progress is not None:
            progress(min(1.0, (start + sel.size) / max(idx.size, 1)), f"{name}: {start + sel.size}/{idx.size} curves")

    out = {k: params[:, i].reshape(batch) for i, k in enumerate(names)}
    out.update(_derived(name, out))
    out["rss"] = rss.reshape(batch)
    out["ok"] = ok.reshape(batch)
    out["n_iter"] = n_iter.reshape(batch)
    return out


def predict(model: str, parameters: Mapping[str, np.ndarray], frame_start, frame_end, input_time=None,
            input_conc=None, reference=None, *, blood=None) -> np.ndarray:
    """Frame-averaged model curves for fitted parameters (the curves :func:`fit` matched).

    Parameters
    ----------
    model : {"1tcm", "2tcm_irr", "2tcm", "srtm"}
        Graphical analyses have no model curve.
    parameters : dict of str to array-like
        The model's parameters (e.g. the output of :func:`fit`), any common shape ``P``.
    frame_start, frame_end, input_time, input_conc, reference, blood
        As for :func:`fit`.

    Returns
    -------
    ndarray of shape ``P + (T,)``; NaN where a parameter is NaN.
    """
    name = _check_model(model)
    if name in ("patlak", "logan"):
        raise InputError(f"{name} is a graphical analysis and has no model curve", fix="Plot its linear fit instead.")
    fs, fe = check_frames(frame_start, frame_end)
    names = PARAMETERS[name]
    missing = [k for k in names if k not in parameters]
    if missing:
        raise InputError(f"the {name} parameters {missing} are missing")
    values = np.stack(np.broadcast_arrays(*(np.asarray(parameters[k], dtype=float) for k in names)), axis=-1)
    shape = values.shape[:-1]
    flat = values.reshape(-1, len(names))
    good = np.all(np.isfinite(flat), axis=-1)
    dt = torch.float64
    if name == "srtm":
        if reference is None:
            raise InputError("SRTM curves need the reference-region TAC")
        rt, rc, ref = _reference_curve(reference, fs, fe)
        theta = float(np.nanmax(flat[:, 1] / (1.0 + flat[:, 2]), initial=0.0))
        table = ExponentialTable.build(rt, rc, fs, fe, theta_max=max(theta, 1e-3) * 1.01)
        ctx = _Context(table, table.input_average, torch.tensor(np.array(ref, dtype=float), dtype=dt))
    else:
        t, c = _check_input(input_time, input_conc, fe)
        theta = float(np.nanmax(np.sum(flat[:, 1:len(names) - 1], axis=-1), initial=0.0))
        table = ExponentialTable.build(t, c, fs, fe, theta_max=max(theta, 1e-3) * 1.01)
        blood_avg = table.input_average
        if blood is not None:
            _, b = _check_input(t, blood, fe, what="whole-blood curve")
            blood_avg = torch.as_tensor(frame_average(t, b, fs, fe), dtype=dt)
        ctx = _Context(table, blood_avg)
    out = np.full((flat.shape[0], fs.size), np.nan)
    if good.any():
        curves, _ = _PREDICT[name](torch.as_tensor(flat[good], dtype=dt), ctx, False)
        out[good] = curves.numpy()
    return out.reshape(shape + (fs.size,))


def _derived(model: str, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        if model == "1tcm":
            return {"VT": p["K1"] / p["k2"]}
        if model == "2tcm_irr":
            return {"Ki": p["K1"] * p["k3"] / (p["k2"] + p["k3"])}
        if model == "2tcm":
            vnd = p["K1"] / p["k2"]
            bp = np.where(p["k4"] > 0, p["k3"] / p["k4"], np.inf)
            return {"VND": vnd, "BPND": bp, "VT": vnd * (1.0 + bp)}
        return {"k2a": p["k2"] / (1.0 + p["BPND"])}
