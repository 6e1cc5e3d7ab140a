r"""Photon transport for voxel Monte Carlo dosimetry: interaction data and Woodcock tracking in torch.

Interaction data
----------------
Mass attenuation coefficients (cm^2/g) of each material (:mod:`core.dosimetry.materials`) for the
photoelectric effect, incoherent (Compton), coherent (Rayleigh) scattering and pair production, on a
log-spaced grid from 1 keV to 3 MeV, mixed by mass fraction, :math:`\mu/\rho = \sum_i w_i (\mu/\rho)_i`:

* **up to 800 keV**: the Elam, Ravel & Sieber tables through xraydb [1]_ (``mu_elam`` per element and
  kind). xraydb silently clamps above 800 keV, so above it:
* **incoherent** = Klein-Nishina cross section per electron [2]_ times electrons per gram,
  :math:`N_A \sum_i w_i Z_i / A_i`, scaled by one factor per material so that it meets xraydb at 800
  keV (the factor absorbs the binding correction left at 800 keV and differences in atomic masses; it is
  within 0.1 % of one for all materials here);
* **photoelectric and coherent**: a log-log power law fitted on 400-800 keV and anchored at the 800 keV
  value (together below 0.35 % of the total above 800 keV: 0.33 % for cortical bone and 0.11 % for
  soft tissue at 800 keV, falling with energy);
* **pair production in the nuclear field**: Maximon's near-threshold expansion of the Bethe-Heitler
  (Born) cross section [3]_, with :math:`k = E/m_ec^2`,

  .. math::

      \sigma = \frac{2\pi}{3}\,\alpha r_e^2 Z^2 \left(\frac{k-2}{k}\right)^3
      \left(1 + \frac{\epsilon}{2} + \frac{23}{40}\epsilon^2 + \frac{11}{60}\epsilon^3
      + \frac{29}{960}\epsilon^4\right),\qquad \epsilon = \frac{2k-4}{2+k+2\sqrt{2k}},

  per atom, times :math:`N_A \sum_i w_i Z_i^2/A_i` atoms·Z^2 per gram. The Coulomb correction
  (a few % of this term for tissue elements near threshold) and triplet production (pair in the field of
  an electron, threshold 2.044 MeV) are ignored (this work). For water the pair term is 1.7e-3 of
  :math:`\mu/\rho` at 1.5 MeV and 2.8e-2 at 3 MeV, so a 10 % error in it moves :math:`\mu` by 0.02 %
  at 1.5 MeV and 0.3 % at 3 MeV. Photons above 3 MeV are refused.

Inside the transport the coefficients are interpolated linearly in log-log on the grid (481 points,
1.7 % apart in energy).

Transport
---------
Woodcock (delta) tracking [4]_: with the majorant :math:`\mu_{max}(E) = \max_m (\mu/\rho)_m(E)
\rho_{max,m}` (the largest density found among voxels of material :math:`m`), a photon flies
:math:`s = -\ln\xi/\mu_{max}` whatever voxels it crosses; the collision is real with probability
:math:`\mu(E, \mathbf r)/\mu_{max}(E)` and virtual (nothing happens) otherwise. Log-log interpolation
of the majorant table is itself a majorant of each material's interpolated coefficient (the max of
linear interpolants is below the interpolant of the max). At a real collision the kind is chosen by the
partial coefficients of the local material:

* **photoelectric**: the photon's energy is deposited locally; fluorescence of tissue elements (Ca K
  about 3.7 keV, P 2 keV, lighter elements below) is below the 5 keV cutoff and would be absorbed within
  micrometres;
* **Compton**: angle and energy from the Klein-Nishina distribution by Kahn's rejection method [5]_
  [6]_ (free electron at rest); the electron's kinetic energy :math:`E - E'` is deposited in the voxel
  (kerma approximation: the Compton electron of a photon below 3 MeV has at most 2.8 MeV, CSDA range
  about 1.4 cm in water, and typically a few hundred keV, range below 1-2 mm; that of a 662 keV photon
  at most 478 keV, under 2 mm);
* **Rayleigh**: the direction changes, the energy does not: :math:`\cos\theta` is sampled from the
  Thomson distribution times the squared atomic form factor of the mixture,
  :math:`\sum_i n_i F_i^2(q)`, :math:`q = \sin(\theta/2)/\lambda`, with ``xraylib.FF_Rayl`` [7]_ [8]_
  (independent-atom approximation): :math:`q^2` by inversion of the cumulative table of
  :math:`F^2`, then rejection with :math:`(1+\cos^2\theta)/2`;
* **pair**: :math:`E - 2m_ec^2` is deposited locally (kerma approximation for the electron and positron)
  and the positron annihilates at rest into two back-to-back 0.511 MeV photons, isotropic, which
  continue in the transport.

A photon below ``cutoff_mev`` (default 5 keV; its mean free path in soft tissue is about 0.25 mm)
deposits its energy locally. Directions are rotated with the standard formulas for polar and
azimuthal angles, with the special case :math:`|w| \to 1` [9]_. All photons are processed at once as
torch tensors; the active set is compacted each step until every photon is absorbed or has escaped.
Positions and directions are float32, energies and weights float64 (so that deposited + escaped equals
emitted to about 1e-15), ``edep`` float64.

Speed (measured on a busy 2-core CPU, one torch thread, 64^3 grid of 5 mm voxels with soft tissue,
bone and lung, isotropic point source): about 3e5 photons/s at 662 keV and 2 MeV, 2e5 photons/s at
208 keV (more scatterings per photon). Several torch threads on an oversubscribed CPU were 5x slower.

References
----------
.. [1] Elam WT, Ravel BD, Sieber JR. A new atomic database for X-ray spectroscopic calculations.
   Radiat Phys Chem 2002;63:121-128 (through xraydb, https://xraypy.github.io/XrayDB/).
.. [2] Klein O, Nishina Y. Über die Streuung von Strahlung durch freie Elektronen nach der neuen
   relativistischen Quantendynamik von Dirac. Z Phys 1929;52:853-868.
.. [3] Maximon LC. Simple analytic expressions for the total Born approximation cross section for pair
   production in a Coulomb field. J Res Natl Bur Stand 1968;72B:79-88.
.. [4] Woodcock E, Murphy T, Hemmings P, Longworth S. Techniques used in the GEM code for Monte Carlo
   neutronics calculations in reactors and other systems of complex geometry. ANL-7050, 1965.
.. [5] Kahn H. Applications of Monte Carlo. RAND Corporation report AECU-3259 (RM-1237-AEC), 1956.
.. [6] Everett CJ, Cashwell ED. A third Monte Carlo sampler. Los Alamos report LA-9721-MS, 1983.
.. [7] Schoonjans T et al. The xraylib library for X-ray-matter interactions. Recent developments.
   Spectrochim Acta B 2011;66:776-784.
.. [8] Salvat F, Fernández-Varea JM, Sempau J. PENELOPE: a code system for Monte Carlo simulation of
   electron and photon transport. OECD/NEA (section on Rayleigh scattering sampling).
.. [9] Briesmeister JF (ed.). MCNP - A general Monte Carlo N-particle transport code. LA-13709-M, 2000,
   chapter 2 (direction cosines after a collision).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np

from core.dosimetry import materials as _materials
from core.errors import InputError

__all__ = ["KINDS", "PhotonTables", "PhotonTally", "photon_tables", "mass_attenuation",
           "klein_nishina_cross_section", "pair_cross_section", "sample_klein_nishina", "rotate_directions",
           "transport_photons", "E_MIN_MEV", "E_MAX_MEV", "XRAYDB_MAX_MEV", "ELECTRON_MASS_MEV"]

#: Interaction kinds, in the order of the last axis of :attr:`PhotonTables.log_mu`.
KINDS = ("photoelectric", "compton", "rayleigh", "pair")
#: CODATA 2018: electron rest energy (MeV), classical electron radius (cm), fine-structure constant,
#: Avogadro constant (1/mol), h*c (keV * angstrom).
ELECTRON_MASS_MEV = 0.51099895000
R_E_CM = 2.8179403262e-13
ALPHA = 7.2973525693e-3
AVOGADRO = 6.02214076e23
HC_KEV_ANGSTROM = 12.398419843320026
#: Energy grid of the tables, MeV.
E_MIN_MEV, E_MAX_MEV, N_GRID = 1e-3, 3.0, 481
#: Upper end of the Elam tables in xraydb, MeV.
XRAYDB_MAX_MEV = 0.8
_FIT_MEV = (0.4, 0.8)
_XMAX = (E_MAX_MEV * 1e3 / HC_KEV_ANGSTROM) ** 2  # largest q^2 (1/angstrom^2) in the Rayleigh tables


# ----------------------------------------------------------------------------------------------------
# cross sections
# ----------------------------------------------------------------------------------------------------

def klein_nishina_cross_section(energy_mev) -> np.ndarray:
    r"""Klein-Nishina total cross section per free electron, cm^2.

    .. math::

        \sigma = 2\pi r_e^2\left\{\frac{1+k}{k^2}\left[\frac{2(1+k)}{1+2k} - \frac{\ln(1+2k)}{k}\right]
        + \frac{\ln(1+2k)}{2k} - \frac{1+3k}{(1+2k)^2}\right\},\quad k = E/m_ec^2.

    Parameters
    ----------
    energy_mev : array-like
        Photon energy, MeV (> 0).

    References
    ----------
    .. [1] Klein O, Nishina Y. Z Phys 1929;52:853-868.

    Examples
    --------
    >>> round(float(klein_nishina_cross_section(1.0)) * 1e24, 4)   # barn
    0.2112
    """
    k = np.asarray(energy_mev, float) / ELECTRON_MASS_MEV
    l2k = np.log1p(2 * k)
    return 2 * np.pi * R_E_CM ** 2 * ((1 + k) / k ** 2 * (2 * (1 + k) / (1 + 2 * k) - l2k / k)
                                      + l2k / (2 * k) - (1 + 3 * k) / (1 + 2 * k) ** 2)


def pair_cross_section(energy_mev) -> np.ndarray:
    """Pair production in the field of a nucleus, per atom per Z^2, cm^2 (Maximon 1968, module docstring).

    Zero below threshold (2 m_e c^2 = 1.022 MeV). Born approximation, no screening (negligible below
    3 MeV), no Coulomb correction.

    References
    ----------
    .. [1] Maximon LC. J Res Natl Bur Stand 1968;72B:79-88.

    Examples
    --------
    >>> float(pair_cross_section(1.0))
    0.0
    """
    k = np.asarray(energy_mev, float) / ELECTRON_MASS_MEV
    kk = np.maximum(k, 2.0)
    eps = (2 * kk - 4) / (2 + kk + 2 * np.sqrt(2 * kk))
    series = 1 + eps / 2 + 23 / 40 * eps ** 2 + 11 / 60 * eps ** 3 + 29 / 960 * eps ** 4
    sigma = 2 * np.pi / 3 * ALPHA * R_E_CM ** 2 * ((kk - 2) / kk) ** 3 * series
    return np.where(k > 2.0, sigma, 0.0)


def _elam(z: int, energy_mev: np.ndarray, kind: str) -> np.ndarray:
    import xraydb

    return np.atleast_1d(np.asarray(xraydb.mu_elam(int(z), np.asarray(energy_mev) * 1e6, kind=kind), float))


def _atomic_mass(z: int) -> float:
    import xraydb

    return float(xraydb.atomic_mass(int(z)))


def mass_attenuation(name: str, energy_mev) -> dict:
    """Partial mass attenuation coefficients of a material, cm^2/g, by the recipe of the module docstring.

    Parameters
    ----------
    name : str
        Material name (:data:`core.dosimetry.materials.MATERIALS` or ``KERNEL_MATERIALS``).
    energy_mev : array-like
        Photon energies, MeV, in [0.001, 3].

    Returns
    -------
    dict of str to ndarray
        One array per kind of :data:`KINDS`, same shape as ``energy_mev``.

    Examples
    --------
    >>> mu = mass_attenuation("water", [0.1, 1.0])
    >>> [round(float(v), 4) for v in sum(mu.values())]
    [0.1707, 0.0707]
    """
    mat = _materials.material(name)
    e = np.atleast_1d(np.asarray(energy_mev, float))
    if np.any(~np.isfinite(e)) or e.min() < E_MIN_MEV * (1 - 1e-9) or e.max() > E_MAX_MEV * (1 + 1e-9):
        raise InputError(f"photon energies {e.min():g}..{e.max():g} MeV are outside {E_MIN_MEV}..{E_MAX_MEV} MeV")
    low = e <= XRAYDB_MAX_MEV
    high = ~low
    e_fit = np.geomspace(*_FIT_MEV, 9)
    mix = {"photo": np.zeros_like(e), "coh": np.zeros_like(e), "incoh": np.zeros_like(e)}
    fit_values = {k: np.zeros_like(e_fit) for k in mix}
    e_edge = np.array([XRAYDB_MAX_MEV])
    edge = {k: 0.0 for k in mix}
    for z, w in zip(mat.z, mat.mass_fractions):
        for k in mix:
            if low.any():
                mix[k][low] += w * _elam(z, e[low], k)
            fit_values[k] += w * _elam(z, e_fit, k)
            edge[k] += w * float(_elam(z, e_edge, k)[0])
    if high.any():
        eh = e[high]
        for k in ("photo", "coh"):  # log-log power law on 400-800 keV, anchored at 800 keV
            slope = np.polyfit(np.log(e_fit), np.log(fit_values[k]), 1)[0]
            mix[k][high] = edge[k] * (eh / XRAYDB_MAX_MEV) ** slope
        electrons_per_g = AVOGADRO * sum(w * z / _atomic_mass(z) for z, w in zip(mat.z, mat.mass_fractions))
        kn = electrons_per_g * klein_nishina_cross_section(eh)
        scale = edge["incoh"] / (electrons_per_g * float(klein_nishina_cross_section(XRAYDB_MAX_MEV)))
        mix["incoh"][high] = scale * kn
    z2_per_g = AVOGADRO * sum(w * z * z / _atomic_mass(z) for z, w in zip(mat.z, mat.mass_fractions))
    pair = z2_per_g * pair_cross_section(e)
    shape = np.shape(energy_mev)
    out = {"photoelectric": mix["photo"], "compton": mix["incoh"], "rayleigh": mix["coh"], "pair": pair}
    return {k: v.reshape(shape) for k, v in out.items()}


def _form_factor_squared(name: str, x: np.ndarray) -> np.ndarray:
    """Mixture F^2(q) per unit mass (relative), q^2 = x in 1/angstrom^2 (independent atoms)."""
    import xraylib

    mat = _materials.material(name)
    q = np.sqrt(x)
    f2 = np.zeros_like(x)
    for z, w in zip(mat.z, mat.mass_fractions):
        ff = np.array([xraylib.FF_Rayl(int(z), float(qq)) for qq in q])
        f2 += w / _atomic_mass(z) * ff ** 2
    return f2


# ----------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhotonTables:
    """Interaction data of a list of materials as torch tensors (:func:`photon_tables`).

    Attributes
    ----------
    names : tuple of str
        Material names; a voxel's material index points into it.
    log_energy : Tensor of shape (G,)
        ln(E / MeV) of the grid, evenly spaced, float64.
    log_mu : Tensor of shape (M, G, 4)
        ln of the mass attenuation coefficients (cm^2/g) per kind of :data:`KINDS`, float32
        (zeros are stored as ln 1e-30).
    ff_x : Tensor of shape (Q,)
        q^2 grid of the Rayleigh tables, 1/angstrom^2, float64.
    ff_cdf : Tensor of shape (M, Q)
        Cumulative integral over q^2 of the mixture's squared form factor, float64.
    """

    names: tuple
    log_energy: object
    log_mu: object
    ff_x: object
    ff_cdf: object

    @property
    def device(self):
        return self.log_mu.device

    def to(self, device) -> "PhotonTables":
        """The same tables on another torch device."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "names"})

    def mu_rho(self, energy_mev):
        """Interpolated mass attenuation coefficients, cm^2/g, Tensor of shape (M, N, 4).

        Examples
        --------
        >>> t = photon_tables(["water"], device="cpu")
        >>> round(float(t.mu_rho([0.1]).sum()), 3)
        0.171
        """
        import torch

        e = torch.as_tensor(energy_mev, dtype=torch.float64, device=self.device).reshape(-1)
        gi, t = _grid_position(self, e)
        lm = self.log_mu
        out = [torch.exp(torch.lerp(lm[m, gi], lm[m, gi + 1], t[:, None])) for m in range(lm.shape[0])]
        return torch.stack(out)


@lru_cache(maxsize=16)
def _tables_numpy(names: tuple):
    energy = np.geomspace(E_MIN_MEV, E_MAX_MEV, N_GRID)
    mu = np.stack([np.stack([mass_attenuation(n, energy)[k] for k in KINDS], axis=-1) for n in names])
    log_mu = np.log(np.maximum(mu, 1e-30))
    x = np.concatenate([[0.0], np.geomspace(1e-6, _XMAX, 700)])
    cdf = []
    for n in names:
        f2 = _form_factor_squared(n, x)
        cdf.append(np.concatenate([[0.0], np.cumsum(0.5 * (f2[1:] + f2[:-1]) * np.diff(x))]))
    return np.log(energy), log_mu, x, np.stack(cdf)


def photon_tables(material_names, device=None) -> PhotonTables:
    """Photon interaction tables for the transport (module docstring).

    Parameters
    ----------
    material_names : sequence of str
        Names from :data:`core.dosimetry.materials.MATERIALS` / ``KERNEL_MATERIALS``; the order defines
        the material indices of the voxel map.
    device : torch.device or str, optional
        Default :func:`core.config.device`.

    Returns
    -------
    PhotonTables
        Built once per list of names (cached), then copied to the device.

    Examples
    --------
    >>> t = photon_tables(["water", "bone"], device="cpu")
    >>> tuple(t.log_mu.shape)
    (2, 481, 4)
    """
    import torch

    from core import config

    names = tuple(str(n).strip().lower() for n in material_names)
    if not names:
        raise InputError("no materials given", fix="Pass e.g. core.dosimetry.materials.MATERIALS.")
    for n in names:
        _materials.material(n)  # raises InputError for unknown names
    dev = torch.device(device) if device is not None else config.device()
    log_e, log_mu, x, cdf = _tables_numpy(names)
    return PhotonTables(names=names,
                        log_energy=torch.as_tensor(log_e, dtype=torch.float64, device=dev),
                        log_mu=torch.as_tensor(log_mu, dtype=torch.float32, device=dev),
                        ff_x=torch.as_tensor(x, dtype=torch.float64, device=dev),
                        ff_cdf=torch.as_tensor(cdf, dtype=torch.float64, device=dev))


def _grid_position(tables: PhotonTables, energy):
    """Grid index i and fraction t (float32) of ln E between grid points i and i+1."""
    import torch

    le = tables.log_energy
    g = le.shape[0]
    step = (le[-1] - le[0]) / (g - 1)
    pos = (torch.log(energy.to(torch.float64)) - le[0]) / step
    gi = torch.clamp(pos.floor(), 0, g - 2)
    t = torch.clamp(pos - gi, 0.0, 1.0).to(torch.float32)
    return gi.to(torch.int64), t


# ----------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------

def sample_klein_nishina(energy_mev, generator):
    r"""Scattered energy and polar angle of Compton scattering on a free electron (Kahn's method).

    With :math:`k = E/m_ec^2` and :math:`\eta = E/E'`: draw :math:`\xi_1, \xi_2, \xi_3`; if
    :math:`\xi_1 \le (1+2k)/(9+2k)` set :math:`\eta = 1 + 2k\xi_2` and accept when
    :math:`\xi_3 \le 4(1/\eta - 1/\eta^2)`; else set :math:`\eta = (1+2k)/(1+2k\xi_2)` and accept when
    :math:`\xi_3 \le (\mu^2 + 1/\eta)/2`, with :math:`\mu = \cos\theta = 1 - (\eta-1)/k`. Rejected
    photons draw again.

    Parameters
    ----------
    energy_mev : Tensor of shape (N,)
        Photon energies, MeV.
    generator : torch.Generator
        On the device of ``energy_mev``.

    Returns
    -------
    energy_out : Tensor of shape (N,), float64
        Scattered photon energy, MeV.
    cos_theta : Tensor of shape (N,), float64

    References
    ----------
    .. [1] Kahn H. Applications of Monte Carlo. AECU-3259, 1956.
    .. [2] Everett CJ, Cashwell ED. A third Monte Carlo sampler. LA-9721-MS, 1983.

    Examples
    --------
    >>> import torch
    >>> e, mu = sample_klein_nishina(torch.full((4,), 0.662), torch.Generator().manual_seed(0))
    >>> bool(((e <= 0.662) & (e >= 0.662 / (1 + 2 * 0.662 / ELECTRON_MASS_MEV))).all())
    True
    """
    import torch

    e = torch.as_tensor(energy_mev).to(torch.float64)
    k = e / ELECTRON_MASS_MEV

    def propose(kk):
        r = torch.rand((3, kk.shape[0]), generator=generator, device=kk.device, dtype=torch.float64)
        first = r[0] <= (1 + 2 * kk) / (9 + 2 * kk)
        two_k = 2 * kk * r[1]
        eta = torch.where(first, 1 + two_k, (1 + 2 * kk) / (1 + two_k))
        mu = 1 - (eta - 1) / kk
        accept = torch.where(first, r[2] <= 4 * (1 / eta - 1 / eta ** 2), r[2] <= 0.5 * (mu * mu + 1 / eta))
        return eta, accept

    # a few rounds on the whole set (no indexing, which is slow), then loop on the few left
    eta = torch.ones_like(k)
    done = torch.zeros(k.shape, dtype=torch.bool, device=k.device)
    for _ in range(3):
        cand, accept = propose(k)
        eta = torch.where(accept & ~done, cand, eta)
        done |= accept
    todo = torch.nonzero(~done).reshape(-1)
    while todo.numel():
        cand, accept = propose(k[todo])
        eta[todo[accept]] = cand[accept]
        todo = todo[~accept]
    cos_t = torch.clamp(1 - (eta - 1) / k, -1.0, 1.0)
    return e / eta, cos_t


def _interp(x_grid, y_grid, x):
    """Piecewise-linear interpolation of increasing x_grid (1-D) at x (float64 tensors)."""
    import torch

    i = torch.clamp(torch.searchsorted(x_grid, x, right=True) - 1, 0, x_grid.shape[0] - 2)
    x0, x1 = x_grid[i], x_grid[i + 1]
    t = torch.clamp((x - x0) / torch.clamp(x1 - x0, min=1e-300), 0.0, 1.0)
    return y_grid[i] + t * (y_grid[i + 1] - y_grid[i])


def _sample_rayleigh(tables: PhotonTables, mat_idx, energy, generator):
    """cos(theta) of coherent scattering: Thomson times the mixture's F^2 (module docstring)."""
    import torch

    cos_t = torch.empty_like(energy, dtype=torch.float64)
    x_max_all = (energy.to(torch.float64) * 1e3 / HC_KEV_ANGSTROM) ** 2
    for m in torch.unique(mat_idx).tolist():
        cdf = tables.ff_cdf[m]
        todo = torch.nonzero(mat_idx == m).reshape(-1)
        while todo.numel():
            x_max = x_max_all[todo]
            area = _interp(tables.ff_x, cdf, x_max)
            u = torch.rand((2, todo.shape[0]), generator=generator, device=energy.device, dtype=torch.float64)
            x = torch.minimum(_interp(cdf, tables.ff_x, u[0] * area), x_max)
            c = 1 - 2 * x / x_max
            accept = u[1] <= 0.5 * (1 + c * c)
            cos_t[todo[accept]] = c[accept]
            todo = todo[~accept]
    return torch.clamp(cos_t, -1.0, 1.0)


def rotate_directions(direction, cos_theta, phi):
    r"""Rotate unit vectors by polar angle :math:`\theta` and azimuth :math:`\phi` about themselves.

    With :math:`(u, v, w)` the old direction and :math:`s = \sqrt{1-w^2}`:

    .. math::

        u' = \sin\theta(uw\cos\phi - v\sin\phi)/s + u\cos\theta,\quad
        v' = \sin\theta(vw\cos\phi + u\sin\phi)/s + v\cos\theta,\quad
        w' = -s\sin\theta\cos\phi + w\cos\theta;

    for :math:`s < 10^{-5}` (travel along z): :math:`(\sin\theta\cos\phi, \sin\theta\sin\phi,
    \mathrm{sign}(w)\cos\theta)`. Computed in float64 and renormalised.

    Parameters
    ----------
    direction : Tensor of shape (N, 3)
    cos_theta, phi : Tensor of shape (N,)

    Returns
    -------
    Tensor of shape (N, 3), dtype of ``direction``

    References
    ----------
    .. [1] Briesmeister JF (ed.). MCNP. LA-13709-M, 2000, chapter 2.

    Examples
    --------
    >>> import torch
    >>> d = rotate_directions(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([0.0]), torch.tensor([0.0]))
    >>> d.tolist()
    [[1.0, 0.0, 0.0]]
    """
    import torch

    d = direction.to(torch.float64)
    u, v, w = d[:, 0], d[:, 1], d[:, 2]
    c = cos_theta.to(torch.float64)
    s_t = torch.sqrt(torch.clamp(1 - c * c, min=0.0))
    cp, sp = torch.cos(phi.to(torch.float64)), torch.sin(phi.to(torch.float64))
    s = torch.sqrt(torch.clamp(1 - w * w, min=0.0))
    polar = s < 1e-5
    s_safe = torch.where(polar, torch.ones_like(s), s)
    nu = s_t * (u * w * cp - v * sp) / s_safe + u * c
    nv = s_t * (v * w * cp + u * sp) / s_safe + v * c
    nw = -s * s_t * cp + w * c
    sign = torch.where(w < 0, -1.0, 1.0).to(torch.float64)
    nu = torch.where(polar, s_t * cp, nu)
    nv = torch.where(polar, s_t * sp, nv)
    nw = torch.where(polar, sign * c, nw)
    out = torch.stack([nu, nv, nw], dim=1)
    out = out / torch.linalg.vector_norm(out, dim=1, keepdim=True)
    return out.to(direction.dtype)


def _isotropic(n, generator, device):
    import torch

    r = torch.rand((2, n), generator=generator, device=device, dtype=torch.float64)
    c = 2 * r[0] - 1
    s = torch.sqrt(torch.clamp(1 - c * c, min=0.0))
    phi = 2 * np.pi * r[1]
    return torch.stack([s * torch.cos(phi), s * torch.sin(phi), c], dim=1).to(torch.float32)


# ----------------------------------------------------------------------------------------------------
# transport
# ----------------------------------------------------------------------------------------------------

@dataclass
class PhotonTally:
    """What happened to the photons of one :func:`transport_photons` call (energies weighted, MeV).

    Attributes
    ----------
    emitted_mev : float
        Sum of weight * energy of the photons given.
    deposited_mev : float
        Energy added to ``edep`` (interactions and photons below the cutoff).
    escaped_mev : float
        Energy carried out of the grid.
    uncollided_escaped : float
        Summed weight of photons that left the grid without any real interaction.
    n_photoelectric, n_compton, n_rayleigh, n_pair, n_virtual, n_cutoff : int
        Number of events of each kind (unweighted).
    steps : int
        Iterations of the tracking loop.
    """

    emitted_mev: float = 0.0
    deposited_mev: float = 0.0
    escaped_mev: float = 0.0
    uncollided_escaped: float = 0.0
    n_photoelectric: int = 0
    n_compton: int = 0
    n_rayleigh: int = 0
    n_pair: int = 0
    n_virtual: int = 0
    n_cutoff: int = 0
    steps: int = 0


def _check_transport(pos, direction, energy, material_map, density, voxel_cm, tables, edep, cutoff_mev):
    import torch

    n = pos.shape[0]
    if pos.ndim != 2 or pos.shape[1] != 3 or direction.shape != pos.shape or energy.shape != (n,):
        raise InputError(f"positions {tuple(pos.shape)}, directions {tuple(direction.shape)} and energies "
                         f"{tuple(energy.shape)} do not match", fix="Pass (N, 3), (N, 3) and (N,) tensors.")
    if density.shape != material_map.shape or edep.shape != density.shape or density.ndim != 3:
        raise InputError(f"density {tuple(density.shape)}, material {tuple(material_map.shape)} and edep "
                         f"{tuple(edep.shape)} must be the same 3D grid")
    if edep.dtype != torch.float64:
        raise InputError(f"edep is {edep.dtype}", fix="Accumulate deposited energy in a float64 tensor.")
    if voxel_cm.shape != (3,) or not bool(torch.all(voxel_cm > 0)):
        raise InputError(f"voxel size {voxel_cm.tolist()} cm is not 3 positive numbers")
    if not (E_MIN_MEV <= cutoff_mev <= 0.5):
        raise InputError(f"cutoff_mev={cutoff_mev!r} is outside {E_MIN_MEV}..0.5 MeV",
                         fix="Use the default 0.005 MeV; the annihilation photons (0.511 MeV) must stay above it.")
    if n:
        lo, hi = float(energy.min()), float(energy.max())
        if not (lo > 0 and hi <= E_MAX_MEV * (1 + 1e-6)):
            raise InputError(f"photon energies {lo:g}..{hi:g} MeV are outside (0, {E_MAX_MEV}] MeV",
                             fix="Photons above 3 MeV are not supported by the photon tables.")
    if material_map.numel():
        if int(material_map.min()) < 0 or int(material_map.max()) >= len(tables.names):
            raise InputError(f"material indices {int(material_map.min())}..{int(material_map.max())} do not "
                             f"fit the {len(tables.names)} tabulated materials {list(tables.names)}")
        if not bool(torch.isfinite(density).all()) or float(density.min()) < 0:
            raise InputError("the density map holds negative or non-finite voxels",
                             fix="Build it with core.dosimetry.materials.material_maps.")


def transport_photons(pos_cm, dir, energy_mev, *, material, density, voxel_cm, tables: PhotonTables, edep,
                      generator, weight=None, cutoff_mev: float = 0.005) -> PhotonTally:
    """Transport photons through a voxel grid by Woodcock tracking, depositing energy in ``edep``.

    Physics in the module docstring. Photons that start outside the grid escape at once.

    Parameters
    ----------
    pos_cm : Tensor of shape (N, 3)
        Start positions, cm, grid frame (x_a in [0, n_a * voxel_cm[a])); used as float32.
    dir : Tensor of shape (N, 3)
        Unit directions (renormalised here).
    energy_mev : Tensor of shape (N,)
        Energies, MeV, in (0, 3].
    material : Tensor of shape (I, J, K), int64
        Index into ``tables.names`` per voxel.
    density : Tensor of shape (I, J, K), float32
        g/cm^3 per voxel.
    voxel_cm : sequence of 3 float or Tensor
        Voxel size, cm.
    tables : PhotonTables
        From :func:`photon_tables` for the materials of ``material`` (moved to the device if needed).
    edep : Tensor of shape (I, J, K), float64
        Deposited energy (MeV), accumulated in place; its device is where the work is done.
    generator : torch.Generator
        Seeded generator on ``edep``'s device; the only source of randomness.
    weight : Tensor of shape (N,), optional
        Statistical weight per photon, default=1.
    cutoff_mev : float, default=0.005
        Photons below this energy deposit it locally.

    Returns
    -------
    PhotonTally
        ``emitted_mev == deposited_mev + escaped_mev`` to rounding.

    References
    ----------
    .. [1] Woodcock E et al. ANL-7050, 1965.

    Examples
    --------
    >>> import torch
    >>> t = photon_tables(["water"], device="cpu")
    >>> grid = dict(material=torch.zeros((10, 10, 10), dtype=torch.int64),
    ...             density=torch.ones((10, 10, 10)), voxel_cm=[1.0, 1.0, 1.0])
    >>> edep = torch.zeros((10, 10, 10), dtype=torch.float64)
    >>> n = 1000
    >>> tally = transport_photons(torch.full((n, 3), 5.0), torch.tensor([[0.0, 0.0, 1.0]]).repeat(n, 1),
    ...                           torch.full((n,), 0.14), tables=t, edep=edep,
    ...                           generator=torch.Generator().manual_seed(1), **grid)
    >>> abs(tally.deposited_mev + tally.escaped_mev - tally.emitted_mev) < 1e-9
    True
    """
    import torch

    dev = edep.device
    f32, f64 = torch.float32, torch.float64
    pos = torch.as_tensor(pos_cm).to(dev, f32).clone()
    d = torch.as_tensor(dir).to(dev, f32)
    e = torch.as_tensor(energy_mev).to(dev, f64).clone()
    n = pos.shape[0]
    w = (torch.ones(n, dtype=f64, device=dev) if weight is None
         else torch.as_tensor(weight).to(dev, f64).expand(n).clone())
    vox = torch.as_tensor(voxel_cm, dtype=f32).to(dev).reshape(-1)
    if vox.numel() == 1:
        vox = vox.expand(3)
    if tables.device != dev:
        tables = tables.to(dev)
    mat_map = material.to(dev)
    rho_map = density.to(dev, f32)
    _check_transport(pos, d, e, mat_map, rho_map, vox, tables, edep, float(cutoff_mev))
    d = d / torch.linalg.vector_norm(d, dim=1, keepdim=True)
    tally = PhotonTally(emitted_mev=float(torch.sum(w * e)))
    if n == 0:
        return tally

    shape = torch.tensor(rho_map.shape, device=dev)
    strides = torch.tensor([rho_map.shape[1] * rho_map.shape[2], rho_map.shape[2], 1], device=dev)
    mat_flat, rho_flat, edep_flat = mat_map.reshape(-1), rho_map.reshape(-1), edep.view(-1)
    n_mat, n_grid = tables.log_mu.shape[0], tables.log_mu.shape[1]
    # majorant: max over materials of mu/rho * (largest density of that material in the grid)
    rho_max = torch.zeros(n_mat, dtype=f32, device=dev).scatter_reduce(0, mat_flat, rho_flat, "amax")
    log_tot = torch.logsumexp(tables.log_mu, dim=2)                                # (M, G)
    log_maj = torch.max(log_tot + torch.log(rho_max)[:, None], dim=0).values        # (G,)
    log_maj = log_maj + 1e-5                                                       # rounding margin
    log_mu_rows = tables.log_mu.reshape(n_mat * n_grid, 4)

    deposited = torch.zeros((), dtype=f64, device=dev)
    escaped = torch.zeros((), dtype=f64, device=dev)
    uncollided = torch.zeros((), dtype=f64, device=dev)
    counts = torch.zeros(7, dtype=torch.int64, device=dev)  # photo, compton, rayl, pair, virtual, out, cutoff

    def voxel_of(p):
        idx = torch.floor(p / vox).to(torch.int64)
        inside = ((idx >= 0) & (idx < shape)).all(dim=1)
        return idx, inside

    # the state is packed in two tensors so that compaction is one index_select each:
    # s32 = [x, y, z, u, v, w, collided] (float32), s64 = [energy, weight] (float64)
    s32 = torch.cat([pos, d, torch.zeros((n, 1), dtype=f32, device=dev)], dim=1)
    s64 = torch.stack([e, w], dim=1)
    # photons that start outside the grid escape; those below the cutoff deposit their energy in place
    idx, inside = voxel_of(pos)
    low = inside & (e < cutoff_mev)
    if bool(low.any()):
        sel = torch.nonzero(low).reshape(-1)
        dep = e[sel] * w[sel]
        edep_flat.index_add_(0, (idx[sel] * strides).sum(dim=1), dep)
        deposited += dep.sum()
        counts[6] += sel.shape[0]
    if not bool(inside.all()):
        escaped += torch.sum(e[~inside] * w[~inside])
        uncollided += torch.sum(w[~inside])
    if not bool((inside & ~low).all()):
        keep = torch.nonzero(inside & ~low).reshape(-1)
        s32, s64 = s32.index_select(0, keep), s64.index_select(0, keep)
    steps = 0
    while s32.shape[0]:
        steps += 1
        m = s32.shape[0]
        e, w = s64[:, 0], s64[:, 1]
        gi, t = _grid_position(tables, e)
        mu_maj = torch.exp(torch.lerp(log_maj[gi], log_maj[gi + 1], t))
        rnd = torch.rand((2, m), generator=generator, device=dev, dtype=f32)
        step = torch.clamp(-torch.log1p(-rnd[0]) / mu_maj, max=1e6)
        s32[:, :3] = torch.addcmul(s32[:, :3], s32[:, 3:6], step[:, None])
        idx, inside = voxel_of(s32[:, :3])
        flat = torch.where(inside, (idx * strides).sum(dim=1), 0)
        mat = mat_flat[flat]
        rows = mat * n_grid + gi
        mus = torch.exp(torch.lerp(log_mu_rows[rows], log_mu_rows[rows + 1], t[:, None])) * rho_flat[flat][:, None]
        cum = torch.cumsum(mus, dim=1)
        xi = rnd[1] * mu_maj
        kind = (xi[:, None] >= cum).sum(dim=1)      # 0..3 real kinds, 4 virtual
        kind = torch.where(inside, kind, 5)          # 5: left the grid
        counts[:6] += torch.bincount(kind, minlength=6)[:6]
        real = kind < 4
        out = kind == 5
        if bool(out.any()):
            sel = torch.nonzero(out).reshape(-1)
            ew = s64.index_select(0, sel)
            escaped += torch.sum(ew[:, 0] * ew[:, 1])
            uncollided += torch.sum(ew[:, 1] * (s32[sel, 6] == 0))
        s32[:, 6] = torch.where(real, 1.0, s32[:, 6])
        dep_e = torch.where(kind == 0, e, torch.zeros_like(e))
        e_next = e.clone()
        new = None
        # Compton
        sel = torch.nonzero(kind == 1).reshape(-1)
        if sel.numel():
            e_sel = e[sel]
            e_new, cos_t = sample_klein_nishina(e_sel, generator)
            dep_e[sel] = e_sel - e_new
            e_next[sel] = e_new
            phi = 2 * np.pi * torch.rand(sel.shape[0], generator=generator, device=dev, dtype=f64)
            s32[sel, 3:6] = rotate_directions(s32[sel, 3:6], cos_t, phi)
        # Rayleigh
        sel = torch.nonzero(kind == 2).reshape(-1)
        if sel.numel():
            cos_t = _sample_rayleigh(tables, mat[sel], e[sel], generator)
            phi = 2 * np.pi * torch.rand(sel.shape[0], generator=generator, device=dev, dtype=f64)
            s32[sel, 3:6] = rotate_directions(s32[sel, 3:6], cos_t, phi)
        # pair: kinetic energy local, two back-to-back annihilation photons
        sel = torch.nonzero(kind == 3).reshape(-1)
        if sel.numel():
            dep_e[sel] = e[sel] - 2 * ELECTRON_MASS_MEV
            e_next[sel] = ELECTRON_MASS_MEV
            s32[sel, 3:6] = _isotropic(sel.shape[0], generator, dev)
            new32 = s32[sel].clone()
            new32[:, 3:6] = -new32[:, 3:6]
            new = (new32, torch.stack([e_next[sel], w[sel]], dim=1))
        # cutoff
        alive = (kind >= 1) & (kind <= 4)
        low = alive & (e_next < cutoff_mev)
        if bool(low.any()):
            counts[6] += int(low.sum())
            dep_e = torch.where(low, dep_e + e_next, dep_e)
            alive = alive & ~low
        dep = w * dep_e
        edep_flat.index_add_(0, flat, dep)
        deposited += dep.sum()
        s64[:, 0] = e_next
        keep = torch.nonzero(alive).reshape(-1)
        if keep.shape[0] < m:
            s32, s64 = s32.index_select(0, keep), s64.index_select(0, keep)
        if new is not None:
            s32, s64 = torch.cat([s32, new[0]]), torch.cat([s64, new[1]])

    tally.deposited_mev = float(deposited)
    tally.escaped_mev = float(escaped)
    tally.uncollided_escaped = float(uncollided)
    c = counts.tolist()
    (tally.n_photoelectric, tally.n_compton, tally.n_rayleigh, tally.n_pair, tally.n_virtual, _,
     tally.n_cutoff) = c
    tally.steps = steps
    return tally
