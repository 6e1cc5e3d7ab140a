r"""Synthetic inverse problems of drug release: a small 2D tumour with known transport parameters.

Shared test data of the classical inverse (:mod:`core.drug_release.inverse_classical`), the
I-PINN and the benchmark. :func:`synthetic_problem` builds a disc-shaped tumour in host
tissue, gives it a random vessel surface-density field, injects liposomal doxorubicin,
runs the forward solver :func:`core.drug_release.transport.simulate` with the true
parameters and adds Gaussian noise to the encapsulated and released drug maps at the
imaging times.

Geometry and physiology (this work unless stated)
-------------------------------------------------
* grid ``size`` x ``size`` voxels of ``spacing_um`` (default 24 x 100 µm = 2.4 mm), tumour a
  centred disc of radius 0.35 x the grid width;
* vessel surface density :math:`S/V` in the tumour log-normal around 200 cm⁻¹ = 0.02 µm⁻¹
  (Baxter & Jain 1989 tumour value) with a smooth random pattern (Gaussian-filtered white
  noise, correlation length ~2 voxels, SD of the log 0.5), host tissue 70 cm⁻¹ = 0.007 µm⁻¹
  (Baxter & Jain 1989 normal tissue) with functional lymphatics 0.007 µm⁻¹ outside the
  tumour only;
* fluid parameters tumour/host from :meth:`FluidParams.tumour_and_host`;
* plasma: :meth:`PlasmaInput.liposomal` 100 µM encapsulated doxorubicin, half-life 20 h.

**Noise model** ("realistic noise" is ours to state): additive Gaussian, independent per
voxel, species and time, with standard deviation ``noise_fraction`` x the largest observed
value over both species and all times (default 2 %). The same SD is stored in
:attr:`InverseProblem.noise_sd_uM`.

Default truth (:data:`DEFAULT_TRUTH`): ``release_per_h`` 0.05 /h (a liposome that releases
its load over a day, (this work)), ``diffusion_free_um2_per_h`` 36 000 µm²/h,
``permeability_carrier_um_per_h`` 1.08 µm/h and ``vascular_pressure_mmhg`` 15.6 mmHg (the
defaults of :class:`TransportParams` and Baxter & Jain 1989).

References
----------
.. [1] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from core.drug_release.inverse import UNKNOWNS, InverseProblem, Unknown, with_parameters
from core.drug_release.pressure import FluidParams, TissueGrid
from core.drug_release.transport import PlasmaInput, TransportParams, simulate
from core.errors import InputError

__all__ = ["DEFAULT_TRUTH", "synthetic_grid", "synthetic_problem"]

#: True parameter values of the synthetic problem (see the module docstring).
DEFAULT_TRUTH = {
    "release_per_h": 0.05,
    "diffusion_free_um2_per_h": 36000.0,
    "permeability_carrier_um_per_h": 1.08,
    "vascular_pressure_mmhg": 15.6,
}
_TUMOUR_SV_PER_UM = 0.02          # 200 /cm, Baxter & Jain 1989
_HOST_SV_PER_UM = 0.007           # 70 /cm, Baxter & Jain 1989
_HOST_LYMPH_PER_UM = 0.007        # (this work)
_DOSE_UM = 100.0                  # (this work)
_HALF_LIFE_H = 20.0               # (this work)


def synthetic_grid(size: int = 24, spacing_um: float = 100.0, seed: int = 0) -> TissueGrid:
    """A 2D disc tumour in host tissue with a random log-normal vessel surface-density field.

    Parameters
    ----------
    size : int, default=24
        Voxels per side (>= 8).
    spacing_um : float, default=100.0
        Voxel edge, µm.
    seed : int, default=0
        Seed of the vessel pattern.

    Examples
    --------
    >>> g = synthetic_grid(16, seed=1)
    >>> g.shape, int(g.tumour.sum()) > 50
    ((16, 16), True)
    """
    size = int(size)
    if size < 8:
        raise InputError(f"size = {size} voxels is too small for a tumour in host tissue", fix="Give size >= 8.")
    if not np.isfinite(spacing_um) or spacing_um <= 0:
        raise InputError(f"spacing_um = {spacing_um} is not a positive length", fix="Give the voxel edge in µm.")
    rng = np.random.default_rng(seed)
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    tumour = np.hypot(yy - c, xx - c) <= 0.35 * size
    z = gaussian_filter(rng.standard_normal((size, size)), 2.0, mode="wrap")
    z = (z - z.mean()) / z.std()
    sv = np.where(tumour, _TUMOUR_SV_PER_UM * np.exp(0.5 * z - 0.125), _HOST_SV_PER_UM)
    return TissueGrid(float(spacing_um), sv, tumour, np.where(tumour, 0.0, _HOST_LYMPH_PER_UM))


def synthetic_problem(size: int = 24, spacing_um: float = 100.0, seed: int = 0, noise_fraction: float = 0.02,
                      times_h=(1.0, 4.0, 24.0), unknowns=tuple(DEFAULT_TRUTH), truth: dict | None = None, *,
                      initial_factor: float = 2.0, dt_h: float = 0.05) -> tuple[InverseProblem, dict]:
    """A synthetic :class:`InverseProblem` with noisy observations of a known truth.

    Parameters
    ----------
    size, spacing_um, seed
        Grid, see :func:`synthetic_grid`; ``seed`` also seeds the noise (``seed + 1``).
    noise_fraction : float, default=0.02
        Noise SD as a fraction of the largest observed value (both species, all times); 0
        gives noise-free data (the stored ``noise_sd_uM`` is then that of 2 %, so that
        residuals stay scaled).
    times_h : sequence of float, default=(1, 4, 24)
        Imaging times, h after injection.
    unknowns : sequence of str, default=all four of :data:`~core.drug_release.inverse.UNKNOWNS`
        Parameters to estimate; the others are fixed at the truth.
    truth : dict, optional
        True values; missing keys from :data:`DEFAULT_TRUTH`.
    initial_factor : float, default=2.0
        Start values: truth x ``initial_factor`` for the 1st, 3rd... unknown and truth /
        ``initial_factor`` for the 2nd, 4th... (clipped to the bounds).
    dt_h : float, default=0.05
        Time step of the forward solver, h.

    Returns
    -------
    problem : InverseProblem
    truth : dict
        True value of every parameter of :data:`DEFAULT_TRUTH`.

    Examples
    --------
    >>> prob, truth = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",))
    >>> prob.observed["released"].shape, truth["release_per_h"]
    ((2, 12, 12), 0.05)
    """
    full = dict(DEFAULT_TRUTH)
    full.update(truth or {})
    if set(full) - set(UNKNOWNS):
        raise InputError(f"unknown truth parameters {sorted(set(full) - set(UNKNOWNS))}",
                         fix=f"Use {', '.join(UNKNOWNS)}.")
    nf = float(noise_fraction)
    if not (0 <= nf < 1):
        raise InputError(f"noise_fraction = {noise_fraction} is not in [0, 1)", fix="Give e.g. 0.02 for 2 %.")
    grid = synthetic_grid(size, spacing_um, seed)
    plasma = PlasmaInput.liposomal(_DOSE_UM, half_life_h=_HALF_LIFE_H)
    base0 = TransportParams(fluid=FluidParams.tumour_and_host(grid.tumour))
    unknowns = tuple(unknowns)
    bad = [u for u in unknowns if u not in UNKNOWNS]
    if bad:
        raise InputError(f"unknowns {bad} are not parameters the inverse can estimate",
                         fix=f"Use {', '.join(UNKNOWNS)}.")
    # the known parameters are the truth; the unknowns keep the TransportParams defaults in base
    base = with_parameters(base0, {k: v for k, v in full.items() if k not in unknowns})
    times = np.asarray(times_h, float)
    true_params = with_parameters(base0, full)
    sol = simulate(grid, true_params, plasma, t_end_h=float(times[-1]), dt_h=dt_h, save_times_h=times)
    clean = {"encapsulated": sol.encapsulated, "released": sol.free + sol.bound}
    peak = max(float(np.max(v)) for v in clean.values())
    sd = (nf if nf > 0 else 0.02) * peak
    rng = np.random.default_rng(seed + 1)
    observed = {k: v + (nf * peak) * rng.standard_normal(v.shape) for k, v in clean.items()}
    unk = []
    for i, name in enumerate(unknowns):
        lo, hi = UNKNOWNS[name]
        start = full[name] * (initial_factor if i % 2 == 0 else 1 / initial_factor)
        unk.append(Unknown(name, float(np.clip(start, lo, hi))))
    problem = InverseProblem(grid=grid, plasma=plasma, base=base, times_h=times, observed=observed,
                             unknowns=tuple(unk), noise_sd_uM=sd, dt_h=dt_h)
    return problem, full
