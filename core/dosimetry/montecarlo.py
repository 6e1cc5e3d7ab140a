r"""Monte Carlo absorbed dose from a time-integrated activity map and a CT: the reference method.

Each emission of the nuclide (and of its short-lived progeny in equilibrium,
:func:`~core.dosimetry.nuclides.equilibrium_chain`) is treated by the method its range calls for:

* **photons** (gamma and X lines, annihilation photons of ICRP-107) are transported through the
  HU-derived material and density map by :func:`core.dosimetry.photons.transport_photons`
  (Woodcock tracking; photoelectric absorption, Klein-Nishina Compton and Rayleigh scattering,
  pair production above 1.022 MeV);
* **electrons** (ICRP-107 beta spectra, conversion and Auger electrons) are transported by the
  condensed-history random walk of :func:`core.dosimetry.electrons.transport_electrons` when their
  range is not small against the voxel (``electrons="auto"`` asks
  :func:`~core.dosimetry.electrons.electron_is_local`; 90Y always is transported), with Møller
  delta rays and bremsstrahlung photons as discrete events (:mod:`core.dosimetry.secondaries`;
  the photons join the photon transport), and deposited where they are born otherwise;
* **alphas and recoil nuclei** (tens of micrometres) are deposited locally, without sampling.

Histories start at a voxel drawn with probability proportional to its time-integrated activity, at
a uniform point inside it, in an isotropic direction. Each particle carries the weight
:math:`w = N_\mathrm{dec} Y / N` (decays in the map times emissions of its kind per decay over the
number of simulated histories), so every batch is an unbiased estimate of the energy imparted.
The statistical uncertainty per voxel is the batch method (Walters, Kawrakow & Rogers, Med Phys
2002;29:2745): :math:`s_{\bar E} = \sqrt{\sum_b (E_b - \bar E)^2 / (n_b (n_b - 1))}`, reported
relative to the voxel's mean. The absorbed dose is the energy imparted over the voxel mass,
:math:`D_v = E_v k / (\rho_v V)`, with :math:`k` J per MeV, and zero in air (below 0.01 g/ml)
as in :mod:`core.dosimetry.local`.

Energy is bookkept: every simulated particle's energy is either deposited in the grid or leaves
it (:attr:`MCResult.escaped_mev`); the tests check the balance to rounding.

References
----------
.. [1] Bolch WE, Eckerman KF, Sgouros G, Thomas SR. MIRD Pamphlet No. 21. J Nucl Med 2009;50:477-484.
.. [2] Ljungberg M, Sjögreen-Gleisner K. The accuracy of absorbed dose estimates in tumours
   determined by quantitative SPECT: a Monte Carlo study. Acta Oncol 2011;50:981-989.
.. [3] Walters BRB, Kawrakow I, Rogers DWO. History by history statistical estimators in the BEAM
   code system. Med Phys 2002;29:2745-2752.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from core.dosimetry.local import DECAYS_PER_MBQ_H, JOULE_PER_MEV
from core.dosimetry.nuclides import PENETRATING, chain_mean_energy_mev, equilibrium_chain, nuclide_data
from core.dosimetry.checks import check_density
from core.errors import InputError

__all__ = ["MCResult", "monte_carlo_dose", "photon_lines", "ChainElectrons",
           "chain_electrons", "AIR_DENSITY_G_ML"]

#: Below this density a voxel is air: its dose is reported as 0 (as in core.dosimetry.local).
AIR_DENSITY_G_ML = 0.01
#: Always deposited locally: alphas and recoils (range tens of micrometres) and the kinetic energy of
#: positrons (their annihilation photons are transported); positron emitters are not therapy nuclides.
_ALWAYS_LOCAL = ("alpha", "alpha recoil", "beta+")

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class MCResult:
    """What a Monte Carlo run gives back.

    Attributes
    ----------
    dose_gy : ndarray
        Absorbed dose per voxel, Gy (for the time-integrated activity given; a dose *rate* in Gy/h
        when an activity in MBq was given for one hour).
    rel_uncertainty : ndarray
        One standard deviation of the voxel's mean over its mean (0 where nothing was deposited).
    energy_mev : dict
        ``emitted`` (by the sampled particles), ``deposited``, ``escaped`` and ``local`` (the
        deterministic local part: alphas, recoils and electrons deposited in place), all MeV.
    histories : dict
        Simulated photons and electrons.
    electrons : str
        ``"transport"`` or ``"local"``.
    time_s : float
        Wall time of the run, s.
    device : str
    """

    dose_gy: np.ndarray
    rel_uncertainty: np.ndarray
    energy_mev: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    electrons: str = "transport"
    time_s: float = 0.0
    device: str = "cpu"

    def uncertainty_in(self, mask=None, *, dose_fraction: float = 0.5) -> float:
        """Median relative uncertainty over ``mask`` (default: voxels above ``dose_fraction`` of the maximum)."""
        if mask is None:
            mask = self.dose_gy >= dose_fraction * float(self.dose_gy.max())
        values = self.rel_uncertainty[np.asarray(mask, bool) & (self.dose_gy > 0)]
        return float(np.median(values)) if values.size else float("nan")


def photon_lines(nuclide: str) -> tuple[np.ndarray, np.ndarray]:
    """Photon energies (MeV) and yields per parent decay of the nuclide and its equilibrium progeny.

    Examples
    --------
    >>> e, y = photon_lines("Lu-177")
    >>> round(float(np.sum(e * y)), 4)            # photon energy per decay, MeV
    0.0351
    """
    energies, yields = [], []
    for member, activity in equilibrium_chain(nuclide):
        data = nuclide_data(member)
        for kind in PENETRATING:
            if kind in data.emissions:
                energies.append(data.emissions[kind].energies_mev)
                yields.append(data.emissions[kind].yields * activity)
    if not energies:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(energies), np.concatenate(yields)


@dataclass(frozen=True)
class ChainElectrons:
    """The electrons of a nuclide and its equilibrium progeny, as one source.

    Attributes
    ----------
    sources : tuple of ElectronSource
        One per chain member with electrons.
    rates : tuple of float
        Electrons per parent decay from each member (activity ratio times electrons per decay).
    """

    sources: tuple
    rates: tuple

    @property
    def per_decay(self) -> float:
        """Electrons per parent decay."""
        return float(sum(self.rates))

    @property
    def energy_per_decay_mev(self) -> float:
        """Electron energy per parent decay, MeV."""
        return float(sum(r * s.mean_energy_mev for r, s in zip(self.rates, self.sources)))

    def sample(self, n: int, generator, device=None):
        """``n`` energies (MeV, float64 tensor): the member by its rate, then its own spectrum."""
        import torch

        if len(self.sources) == 1:
            return self.sources[0].sample(n, generator, device=device)
        p = torch.tensor(self.rates, dtype=torch.float64, device=device)
        which = torch.multinomial(p / p.sum(), n, replacement=True, generator=generator)
        out = torch.empty(n, dtype=torch.float64, device=device)
        for i, source in enumerate(self.sources):
            hit = which == i
            k = int(hit.sum())
            if k:
                out[hit] = source.sample(k, generator, device=device).to(torch.float64)
        return out


def chain_electrons(nuclide: str) -> ChainElectrons:
    """Electrons of the nuclide and its short-lived progeny (:func:`equilibrium_chain`).

    Examples
    --------
    >>> round(chain_electrons("Lu-177").energy_per_decay_mev, 4)
    0.1482
    """
    from core.dosimetry.electrons import electron_source

    sources, rates = [], []
    for member, activity in equilibrium_chain(nuclide):
        source = electron_source(member)
        if source.per_decay > 0:
            sources.append(source)
            rates.append(activity * source.per_decay)
    return ChainElectrons(tuple(sources), tuple(rates))


def _check_maps(tia, density, material, voxel_mm):
    tia = np.asarray(tia, float)
    if tia.ndim != 3:
        raise InputError(f"the activity map has shape {tia.shape}; a 3D map is needed")
    if not np.all(np.isfinite(tia)) or np.any(tia < 0):
        raise InputError("the time-integrated activity holds negative or non-finite voxels",
                         fix="Compute it with core.dosimetry.tia and mask invalid voxels.")
    if tia.sum() <= 0:
        raise InputError("the activity map is empty (all zero)", fix="Check the SPECT calibration and the mask.")
    density = check_density(density, tia.shape)
    material = np.full(tia.shape, int(material)) if np.ndim(material) == 0 else np.asarray(material)
    if material.shape != tia.shape:
        raise InputError(f"the material map {material.shape} and the activity map {tia.shape} are on different grids",
                         fix="Resample the CT-derived maps onto the activity grid first.")
    size = np.broadcast_to(np.asarray(voxel_mm, float), (3,)).copy()
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise InputError(f"voxel size {voxel_mm!r} mm is not positive")
    return tia, density, material.astype(np.int64), size


def _source_points(cdf, shape, voxel_cm, n, generator, device):
    """``n`` start points (cm) drawn from the activity distribution and isotropic unit directions."""
    import torch

    u = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * cdf[-1]
    flat = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.numel() - 1)
    nj, nk = shape[1], shape[2]
    idx = torch.stack((flat // (nj * nk), (flat // nk) % nj, flat % nk), dim=1)
    offset = torch.rand((n, 3), generator=generator, device=device, dtype=torch.float64)
    pos = ((idx.to(torch.float64) + offset) * voxel_cm).to(torch.float32)
    cos_t = 2.0 * torch.rand(n, generator=generator, device=device) - 1.0
    phi = 2.0 * torch.pi * torch.rand(n, generator=generator, device=device)
    sin_t = torch.sqrt(torch.clamp(1.0 - cos_t * cos_t, min=0.0))
    direction = torch.stack((sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t), dim=1)
    return pos, direction, flat


def monte_carlo_dose(tia_mbq_h, nuclide: str, density_g_ml, material, voxel_mm, *,
                     n_photons: int = 1_000_000, n_electrons: int = 1_000_000, n_batches: int = 10,
                     electrons: str = "auto", electron_range_fraction: float = 0.01, brems_split: int = 1,
                     materials=None, chunk: int | None = None, seed: int = 0,
                     device=None, progress: Progress | None = None) -> MCResult:
    """Absorbed dose (Gy) per voxel by Monte Carlo (module docstring).

    Parameters
    ----------
    tia_mbq_h : ndarray (X, Y, Z)
        Time-integrated activity per voxel, MBq h (an activity in MBq gives a dose rate in Gy/h).
    nuclide : str
        E.g. ``"Lu-177"``; its short-lived progeny are included (:func:`equilibrium_chain`).
    density_g_ml : ndarray or float
        Mass density per voxel, g/ml (:func:`core.dosimetry.materials.material_maps`).
    material : ndarray of int or int
        Index per voxel into ``materials``.
    voxel_mm : float or 3 floats
    n_photons, n_electrons : int
        Histories of each kind over all batches (0 skips the kind's transport; electrons are then
        deposited locally).
    n_batches : int, default=10
        Batches for the uncertainty (>= 2).
    electrons : {"auto", "transport", "local"}
    electron_range_fraction : float, default=0.01
        Electrons whose residual range is below this fraction of the smallest voxel side deposit in
        place (:func:`~core.dosimetry.electrons.transport_electrons`); 0 follows every electron.
    brems_split : int, default=1
        Bremsstrahlung photons made per radiative event, each with that fraction of the weight
        (variance reduction far from the source; :func:`~core.dosimetry.electrons.transport_electrons`).
    materials : sequence of str, optional
        Material names of the indices; default :data:`core.dosimetry.materials.MATERIALS`.
    chunk : int, optional
        Particles transported at once (memory); default 2**18 on CPU, 2**21 on CUDA.
    seed : int
    device : torch.device, optional
        Default :func:`core.config.device`.
    progress : callable(fraction, message), optional

    Returns
    -------
    MCResult
    """
    import torch

    from core import config
    from core.dosimetry import electrons as el
    from core.dosimetry import materials as mat
    from core.dosimetry import photons as ph

    t0 = time.perf_counter()
    tia, density, material, size_mm = _check_maps(tia_mbq_h, density_g_ml, material, voxel_mm)
    if electrons not in ("auto", "transport", "local"):
        raise InputError(f"electrons={electrons!r} is not one of 'auto', 'transport', 'local'")
    if n_batches < 2:
        raise InputError(f"n_batches={n_batches} gives no uncertainty", fix="Use 2 or more batches (10 is usual).")
    materials = tuple(materials or mat.MATERIALS)
    if material.max() >= len(materials) or material.min() < 0:
        raise InputError(f"material indices {int(material.min())}..{int(material.max())} do not fit the "
                         f"{len(materials)} materials {list(materials)}")
    chain = equilibrium_chain(nuclide)
    device = torch.device(device) if device is not None else config.device()
    chunk = int(chunk or (2 ** 21 if device.type == "cuda" else 2 ** 18))
    gen = torch.Generator(device=device).manual_seed(int(seed))
    shape = tia.shape
    voxel_cm = torch.tensor(size_mm / 10.0, dtype=torch.float32, device=device)
    dens_t = torch.as_tensor(density, dtype=torch.float32, device=device).contiguous()
    mat_t = torch.as_tensor(material, dtype=torch.int64, device=device).contiguous()
    cdf = torch.cumsum(torch.as_tensor(tia.ravel(), dtype=torch.float64, device=device), 0)
    decays = float(tia.sum()) * DECAYS_PER_MBQ_H

    if electrons == "auto":
        electrons = "local" if all(el.electron_is_local(m, size_mm.min()) for m, _ in chain) else "transport"
    if n_electrons <= 0:
        electrons = "local"
    e_lines, e_yields = photon_lines(nuclide)
    photon_yield = float(e_yields.sum())
    e_source = chain_electrons(nuclide)
    local_mev_per_decay = chain_mean_energy_mev(nuclide, *_ALWAYS_LOCAL)
    if electrons == "local":
        local_mev_per_decay += e_source.energy_per_decay_mev
    n_ph = int(n_photons) if photon_yield > 0 else 0
    n_el = int(n_electrons) if (electrons == "transport" and e_source.per_decay > 0) else 0
    tables = ph.photon_tables(materials, device=device) if (n_ph or n_el) else None
    line_p = torch.as_tensor(e_yields / photon_yield if n_ph else [1.0], dtype=torch.float64, device=device)
    line_e = torch.as_tensor(e_lines if n_ph else [0.0], dtype=torch.float32, device=device)

    total = torch.zeros(shape, dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    emitted = escaped = 0.0
    steps = n_batches * (int(np.ceil(n_ph / n_batches / chunk)) + int(np.ceil(n_el / n_batches / chunk))) or 1
    done = 0
    for b in range(n_batches):
        edep = torch.zeros_like(total)
        for kind, n_total in (("photon", n_ph), ("electron", n_el)):
            n_b = n_total // n_batches + (1 if b < n_total % n_batches else 0)
            if n_b == 0:
                continue
            per_decay = photon_yield if kind == "photon" else e_source.per_decay
            w = decays * per_decay / n_b
            for start in range(0, n_b, chunk):
                n = min(chunk, n_b - start)
                pos, direction, _ = _source_points(cdf, shape, voxel_cm, n, gen, device)
                weight = torch.full((n,), w, dtype=torch.float64, device=device)
                if kind == "photon":
                    energy = line_e[torch.multinomial(line_p, n, replacement=True, generator=gen)]
                    tally = ph.transport_photons(pos, direction, energy, material=mat_t, density=dens_t,
                                                 voxel_cm=voxel_cm, tables=tables, edep=edep, generator=gen,
                                                 weight=weight)
                    escaped += float(tally.escaped_mev)
                else:
                    energy = e_source.sample(n, gen, device=device)
                    bank: list = []
                    escaped += float(el.transport_electrons(pos, direction, energy, density=dens_t,
                                                            voxel_cm=voxel_cm, edep=edep, generator=gen,
                                                            weight=weight, photon_bank=bank, brems_split=brems_split,
                                                            local_range_fraction=electron_range_fraction))
                    if bank:   # bremsstrahlung photons of the electrons
                        tally = ph.transport_photons(torch.cat([b[0] for b in bank]), torch.cat([b[1] for b in bank]),
                                                     torch.cat([b[2] for b in bank]), material=mat_t, density=dens_t,
                                                     voxel_cm=voxel_cm, tables=tables, edep=edep, generator=gen,
                                                     weight=torch.cat([b[3] for b in bank]))
                        escaped += float(tally.escaped_mev)
                emitted += float(torch.sum(energy.to(torch.float64) * weight))
                done += 1
                if progress is not None:
                    progress(done / steps, f"batch {b + 1}/{n_batches}: {kind}s")
        total += edep
        total_sq += edep * edep
    mean = total / n_batches
    var_mean = torch.clamp(total_sq / n_batches - mean * mean, min=0.0) / (n_batches - 1)
    mean_np = mean.cpu().numpy()
    # deterministic local part: alphas, recoils (and electrons when deposited in place)
    local = tia * DECAYS_PER_MBQ_H * local_mev_per_decay
    edep_np = mean_np + local
    volume_ml = float(np.prod(size_mm)) / 1000.0
    mass_kg = density * volume_ml / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        dose = np.where(density >= AIR_DENSITY_G_ML, edep_np * JOULE_PER_MEV / mass_kg, 0.0)
        rel = np.where(edep_np > 0, np.sqrt(var_mean.cpu().numpy()) / edep_np, 0.0)
    energy = {"emitted": emitted / n_batches, "deposited": float(mean_np.sum()), "escaped": escaped / n_batches,
              "local": float(local.sum())}
    return MCResult(dose_gy=dose, rel_uncertainty=rel, energy_mev=energy,
                    histories={"photons": n_ph, "electrons": n_el}, electrons=electrons,
                    time_s=time.perf_counter() - t0, device=str(device))
