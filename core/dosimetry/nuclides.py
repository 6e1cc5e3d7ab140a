"""Nuclear data of the radionuclides of therapy and imaging, from maintained packages only.

* Half-lives, decay modes, progeny and branching fractions: ``radioactivedecay`` (its
  default data set is ICRP-107, Eckerman & Endo 2008) [1]_.
* Emissions per decay (energies in MeV and yields per decay, for beta-minus and beta-plus
  mean energies, gamma and X-ray lines, internal-conversion and Auger electrons, alphas
  and alpha recoils): the ICRP Publication 107 tables through ``icrp107-database`` [2]_.

Nothing here is typed in by hand. Names are accepted as ``"Lu-177"``, ``"Lu177"``,
``"177Lu"`` or ``"lu-177"`` and given back as ``"Lu-177"``; an unknown name raises an
:class:`~core.errors.InputError` that suggests the nearest known ones.

Kinds of radiation (:data:`KINDS`) are split for dosimetry into *penetrating* photons
(gamma, X-ray, annihilation), transported through the body, and *non-penetrating*
particles (beta mean energies, conversion and Auger electrons, alphas and recoils), whose
range decides whether local deposition is adequate (this work follows MIRD practice).

References
----------
.. [1] Malins A, Lemoine T. radioactivedecay: a Python package for radioactive decay
   calculations. J Open Source Softw 2022;7(71):3318.
.. [2] ICRP. Nuclear decay data for dosimetric calculations. ICRP Publication 107.
   Ann ICRP 2008;38(3).

Examples
--------
>>> lu = nuclide_data("Lu177")
>>> lu.name, round(lu.half_life_s / 86400, 3)
('Lu-177', 6.647)
>>> round(lu.mean_energy_mev("beta-"), 4)
0.1333
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError

__all__ = ["KINDS", "PENETRATING", "NON_PENETRATING", "Emissions", "NuclideData", "canonical_name",
           "nuclide_data", "decay_factor", "known_nuclides", "equilibrium_chain", "chain_mean_energy_mev"]

#: Kinds of radiation read from ICRP-107 (the ``icrp107-database`` spectrum names).
KINDS = ("beta-", "beta+", "gamma", "X", "annihilation", "IE", "auger", "alpha", "alpha recoil")
#: Photons, transported through the body.
PENETRATING = ("gamma", "X", "annihilation")
#: Charged particles (mean beta energies per branch, electrons, alphas, recoils).
NON_PENETRATING = ("beta-", "beta+", "IE", "auger", "alpha", "alpha recoil")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "y": 365.25 * 86400.0}


@dataclass(frozen=True)
class Emissions:
    """Discrete emissions of one kind.

    Attributes
    ----------
    kind : str
    energies_mev : ndarray
        Energy of each line (beta: the mean energy of each branch), MeV.
    yields : ndarray
        Emissions per decay.
    """

    kind: str
    energies_mev: np.ndarray
    yields: np.ndarray

    @property
    def energy_per_decay_mev(self) -> float:
        """:math:`\\sum_i E_i y_i`, MeV per decay."""
        return float(np.sum(self.energies_mev * self.yields))

    @property
    def per_decay(self) -> float:
        """:math:`\\sum_i y_i`, emissions per decay."""
        return float(np.sum(self.yields))


@dataclass(frozen=True)
class NuclideData:
    """Decay data of one nuclide.

    Attributes
    ----------
    name : str
        ``"Lu-177"`` style.
    half_life_s : float
    progeny : tuple of (str, float)
        Direct daughters and branching fractions.
    emissions : dict of str to Emissions
        The kinds of :data:`KINDS` the nuclide emits.
    """

    name: str
    half_life_s: float
    progeny: tuple
    emissions: dict = field(default_factory=dict)

    @property
    def decay_constant_per_s(self) -> float:
        """:math:`\\lambda = \\ln 2 / T_{1/2}`, 1/s."""
        return math.log(2.0) / self.half_life_s

    def mean_energy_mev(self, *kinds: str) -> float:
        """Energy emitted per decay in the given kinds (all when none given), MeV."""
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise InputError(f"unknown radiation kinds {unknown}", fix=f"Use some of {list(KINDS)}.")
        wanted = kinds or KINDS
        return float(sum(self.emissions[k].energy_per_decay_mev for k in wanted if k in self.emissions))

    @property
    def penetrating_fraction(self) -> float:
        """Fraction of the emitted energy carried by photons."""
        total = self.mean_energy_mev()
        return self.mean_energy_mev(*PENETRATING) / total if total > 0 else 0.0


@functools.lru_cache(maxsize=1)
def known_nuclides() -> tuple[str, ...]:
    """Every nuclide name of radioactivedecay's default (ICRP-107) data set."""
    import radioactivedecay as rd

    return tuple(str(n) for n in rd.DEFAULTDATA.nuclides)


def canonical_name(name) -> str:
    """``"Lu-177"`` for any accepted spelling; InputError with the nearest known names otherwise.

    Examples
    --------
    >>> canonical_name("177Lu"), canonical_name("tc99m")
    ('Lu-177', 'Tc-99m')
    """
    import radioactivedecay as rd

    text = str(name).strip()
    try:
        parsed = rd.Nuclide(text[:1].upper() + text[1:]).nuclide if text else ""
    except Exception:  # radioactivedecay raises its own error types for unknown strings
        parsed = ""
    if parsed in known_nuclides():
        return parsed
    near = difflib.get_close_matches(text.replace(" ", "-").title(), known_nuclides(), n=3, cutoff=0.6)
    raise InputError(f"unknown nuclide {name!r}",
                     fix=(f"Did you mean {', '.join(near)}? " if near else "") +
                         "Write nuclides as element-mass, e.g. 'Lu-177', 'Y-90', 'I-131', 'Ac-225'.")


def _emissions(name: str) -> dict[str, Emissions]:
    import icrp107_database as icrp

    out = {}
    for kind in KINDS:
        try:
            spectrum = icrp.get_icrp107_spectrum(name, kind)
        except BaseException:  # the package raises a bare Exception for nuclides it lacks  # noqa: BLE001
            return {}
        energies = np.asarray(spectrum["energies"], float)
        if energies.size:
            out[kind] = Emissions(kind, energies, np.asarray(spectrum["weights"], float))
    return out


@functools.lru_cache(maxsize=64)
def nuclide_data(name) -> NuclideData:
    """Half-life, daughters and ICRP-107 emissions of a nuclide.

    Raises
    ------
    InputError
        Unknown name (with suggestions), or a nuclide without ICRP-107 emission data.
    """
    import radioactivedecay as rd

    canonical = canonical_name(name)
    nuc = rd.Nuclide(canonical)
    half_life = float(nuc.half_life("s"))
    if not math.isfinite(half_life):
        raise InputError(f"{canonical} is stable", fix="Name a radionuclide.")
    emissions = _emissions(canonical)
    if not emissions:
        raise InputError(f"ICRP-107 has no emission data for {canonical}",
                         fix="Use a nuclide of ICRP Publication 107 (all radionuclides of medical use are in it).")
    progeny = tuple((str(d), float(b)) for d, b in zip(nuc.progeny(), nuc.branching_fractions()))
    return NuclideData(name=canonical, half_life_s=half_life, progeny=progeny, emissions=emissions)


def decay_factor(name, elapsed_s) -> np.ndarray:
    """:math:`e^{-\\lambda t}` of a nuclide after ``elapsed_s`` seconds (array-like, >= 0).

    Examples
    --------
    >>> float(decay_factor("Lu-177", 6.647 * 86400))
    0.5
    """
    t = np.asarray(elapsed_s, float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError("elapsed times must be finite and >= 0 seconds", fix="Check the time points.")
    return np.exp(-nuclide_data(name).decay_constant_per_s * t)


def equilibrium_chain(name, *, max_half_life_fraction: float = 0.1) -> tuple[tuple[str, float], ...]:
    r"""The nuclide and its short-lived progeny, with activities per decay of the parent.

    A daughter is included when its half-life is below ``max_half_life_fraction`` of the parent's
    (and so is each of its own such daughters): it is then in transient (or secular) equilibrium
    and, assuming it decays where its parent did, it adds
    :math:`b \, \lambda_d / (\lambda_d - \lambda_p)` decays per parent decay (Bateman equations,
    transient equilibrium; :math:`b` the branching fraction). Longer-lived daughters (for I-131 the
    1.2 % branch to Xe-131m, 11.8 d) are left out. Daughters that leave the site (recoil release of
    Bi-213 from 225Ac carriers) are not modelled: an assumption of this work that the dose report
    states.

    Returns
    -------
    tuple of (str, float)
        ``(member, decays per parent decay)``, the parent first with 1.0.

    Examples
    --------
    >>> [(n, round(a, 3)) for n, a in equilibrium_chain("Ac-225")][:3]
    [('Ac-225', 1.0), ('Fr-221', 1.0), ('At-217', 1.0)]
    >>> equilibrium_chain("Lu-177")
    (('Lu-177', 1.0),)
    """
    parent = nuclide_data(name)
    if not 0.0 < max_half_life_fraction < 1.0:
        raise InputError(f"max_half_life_fraction {max_half_life_fraction!r} is not in (0, 1)")
    out: dict[str, float] = {parent.name: 1.0}
    todo = [(parent.name, 1.0)]
    lam_p = parent.decay_constant_per_s
    while todo:
        member, activity = todo.pop(0)
        for daughter, branch in nuclide_data(member).progeny:
            try:
                data = nuclide_data(daughter)
            except InputError:  # stable daughter (or one without ICRP-107 emissions)
                continue
            if data.half_life_s >= max_half_life_fraction * parent.half_life_s:
                continue
            lam_d = data.decay_constant_per_s
            ratio = activity * branch * lam_d / (lam_d - lam_p)
            out[data.name] = out.get(data.name, 0.0) + ratio
            todo.append((data.name, ratio))
    return tuple(out.items())


def chain_mean_energy_mev(name, *kinds: str, **chain_options) -> float:
    """Energy per parent decay emitted by the nuclide and its equilibrium progeny, MeV.

    Examples
    --------
    >>> round(chain_mean_energy_mev("Lu-177", "beta-"), 4)
    0.1333
    """
    return float(sum(a * nuclide_data(m).mean_energy_mev(*kinds) for m, a in equilibrium_chain(name, **chain_options)))
