r"""What-if comparison of drug-delivery scenarios on one tumour grid (free drug, liposomes, triggers, RT).

Units as in :mod:`core.drug_release.transport`: time in **hours** from injection, lengths in
µm, drug in **µM** doxorubicin equivalent per tissue volume, pressure in mmHg, temperature °C.

Scenarios (:data:`SCENARIOS`; doses and plasma kinetics :data:`DEFAULT_SETTINGS`, the values
of the preclinical phantom :mod:`core.phantoms.drug_tumour`, this work)
-----------------------------------------------------------------------------------------
``"free"``
    free doxorubicin, :meth:`PlasmaInput.free_drug` (20 µM; 95 % cleared with a 5 min, 5 %
    with a 10 h half-life), no carrier; 0-6 h.
``"liposome"``
    non-triggered PEGylated liposome (100 µM encapsulated, plasma half-life 20 h), constant
    leak ``release_law("liposome")``; 0-48 h.
``"ph_sensitive"``
    the same carrier opening in acid, :math:`k_{rel}(\mathbf x)` =
    ``release_law("ph_sensitive").rate_per_h(ph=pH(x))`` from an extracellular pH map (e.g.
    CEST); 0-48 h.
``"thermosensitive"``
    lysolipid thermosensitive liposome (100 µM, plasma half-life 2 h) under mild hyperthermia:
    ``hyperthermia_temperature`` (42 °C within 0.8 tumour radii, 0.3 mm edge) from injection
    for :attr:`Heating.duration_h` = 1 h, then 37 °C. Release follows
    ``release_law("thermosensitive")`` in the interstitium and, as observed by Manzoor et al.
    (2012), inside heated vessels: the free drug released during one transit
    :math:`\tau` (:attr:`Heating.transit_time_s` = 10 s) through a voxel's vessels,
    :math:`c_{pL}(t)\,(1 - e^{-k_{rel}(T)\tau})`, is added to that voxel's plasma free drug
    (``simulate(local_plasma_free=...)``). The change of release field when heating stops is
    simulated in two periods (:func:`~core.drug_release.piecewise.simulate_piecewise`); 0-24 h.
``"liposome_rt"``
    the non-triggered liposome after radiotherapy that lowered the interstitial fluid
    pressure (IFP) by the fraction :math:`r` = :attr:`ScenarioSettings.ifp_reduction`
    (default 0.3, **this work**): the IFP map becomes :math:`(1 - r)\,p`. Why this form:
    with :math:`p` the steady solution of the Baxter-Jain fluid equation
    (:mod:`core.drug_release.pressure`), :math:`(1-r)p` is the exact steady solution of the
    same equation with an extra fluid drainage :math:`r\,L_p (S/V)\,p_e` per volume (the
    equation is linear and the boundary value is 0), i.e. a tumour whose interstitial fluid
    leaves faster, as after radiation-induced cell kill and vessel decompression. The vessel
    pressure, permeabilities and drug parameters are unchanged; what changes for the drug is
    that less pressure opposes filtration, :math:`J_v/V = L_p\,S/V\,(p_e - p)` rises and
    carries more carrier across the wall (solvent drag), and the outward Darcy flow is
    slower. Drug carried off by the extra drainage is neglected (this work). The review of
    Multhoff & Vaupel (2012) finds radiation-induced changes of vascular transport after
    fractionated doses up to 40 Gy "inconsistent" in direction, extent and time course, so
    no single literature value is used: set the reduction per case.

Comparison (:func:`compare_scenarios`): each scenario on the same voxel grid (the AUC of free
drug per voxel, its tumour median and the lethal fraction,
:func:`~core.drug_release.outcomes.lethal_fraction`) and in the same stochastic micrometre
window around one voxel (:mod:`core.drug_release.microwindow`: vessel reconstruction,
penetration distance and lethal fraction of tissue pixels).

References
----------
.. [1] Manzoor AA, Lindner LH, Landon CD, et al. Overcoming limitations in nanoparticle drug
   delivery: triggered, intravascular release to improve drug penetration into tumors. Cancer
   Res 2012;72:5566-5575.
.. [2] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
.. [3] Multhoff G, Vaupel P. Radiation-induced changes in microcirculation and interstitial
   fluid pressure affecting the delivery of macromolecules and nanotherapeutics to tumors.
   Front Oncol 2012;2:165.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from core.drug_release.microwindow import (WINDOW_SPACING_UM, WINDOW_VOXELS, default_window_voxel, micro_window,
                                           window_outcomes, window_periods)
from core.drug_release.outcomes import DEFAULT_LETHAL_AUC_UM_H, exposure_auc, lethal_fraction
from core.drug_release.pressure import TissueGrid, check_grid, interstitial_pressure
from core.drug_release.release import hyperthermia_temperature, release_law
from core.drug_release.piecewise import FieldFunction, Period, default_dt_h, simulate_piecewise
from core.drug_release.transport import PlasmaInput, TransportParams, TransportSolution, param_fields, simulate
from core.errors import GeometryError, InputError

__all__ = ["SCENARIOS", "DEFAULT_SETTINGS", "Heating", "ScenarioSettings", "ScenarioSetup", "scenario_setup",
           "default_save_times_h", "run_scenario", "run_window", "ScenarioOutcome", "compare_scenarios",
           "HOST_PH"]

#: The scenarios, name -> label (ordered).
SCENARIOS = types.MappingProxyType({
    "free": "Free doxorubicin",
    "liposome": "PEGylated liposome (non-triggered)",
    "ph_sensitive": "pH-sensitive liposome",
    "thermosensitive": "Thermosensitive liposome + 1 h hyperthermia 42 °C",
    "liposome_rt": "Liposome after radiotherapy (lower IFP)",
})
#: pH put where the map is NaN outside the tumour (this work: normal extracellular pH).
HOST_PH = 7.4


@dataclasses.dataclass(frozen=True)
class Heating:
    """Mild hyperthermia over the tumour (this work, the phantom's protocol).

    Attributes
    ----------
    temperature_c : float, default=42.0
        Target temperature, °C.
    duration_h : float, default=1.0
        Heating from injection, h.
    radius_frac : float, default=0.8
        Heated radius as a fraction of the tumour's equivalent radius :math:`\\sqrt{A/\\pi}`.
    edge_mm : float, default=0.3
        Width of the logistic edge of ``hyperthermia_temperature``, mm.
    transit_time_s : float, default=10.0
        Transit time of blood through a voxel's heated vessels, s (intravascular release).
    """

    temperature_c: float = 42.0
    duration_h: float = 1.0
    radius_frac: float = 0.8
    edge_mm: float = 0.3
    transit_time_s: float = 10.0

    def __post_init__(self):
        for name in ("duration_h", "radius_frac", "edge_mm", "transit_time_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"Heating.{name} = {v!r} is not positive", fix=f"Give {name} > 0.")
        if not 37.0 < float(self.temperature_c) <= 50.0:
            raise InputError(f"Heating.temperature_c = {self.temperature_c!r} °C is not in (37, 50]",
                             fix="Mild hyperthermia is about 40-43 °C.")


@dataclasses.dataclass(frozen=True)
class ScenarioSettings:
    """Dose, plasma kinetics, duration and interventions of one scenario (defaults: :data:`DEFAULT_SETTINGS`).

    Attributes
    ----------
    dose_uM : float
        Plasma concentration at injection, µM (encapsulated for carriers).
    half_life_h : float or None
        Plasma half-life of the carrier, h; None for free drug (bi-exponential
        :meth:`PlasmaInput.free_drug`).
    t_end_h : float
        Simulated time, h.
    heating : Heating or None, default=None
    ifp_reduction : float, default=0.0
        Fraction by which radiotherapy lowered the IFP, in [0, 1).
    """

    dose_uM: float
    half_life_h: float | None
    t_end_h: float
    heating: Heating | None = None
    ifp_reduction: float = 0.0

    def __post_init__(self):
        for name in ("dose_uM", "t_end_h") + (("half_life_h",) if self.half_life_h is not None else ()):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"ScenarioSettings.{name} = {v!r} is not positive", fix=f"Give {name} > 0.")
        if not 0.0 <= float(self.ifp_reduction) < 1.0:
            raise InputError(f"ifp_reduction = {self.ifp_reduction!r} is not in [0, 1)",
                             fix="Give the fractional IFP drop, e.g. 0.3.")
        if self.heating is not None and not isinstance(self.heating, Heating):
            raise InputError(f"heating must be a Heating or None, got {type(self.heating).__name__}",
                             fix="Use Heating(...).")
        if self.heating is not None and self.heating.duration_h >= self.t_end_h:
            raise InputError(f"heating lasts {self.heating.duration_h} h, not less than t_end_h = {self.t_end_h} h",
                             fix="Simulate past the end of heating.")


#: Drug protocol per scenario (this work); the phantom takes its doses, half-lives and durations from here.
DEFAULT_SETTINGS = types.MappingProxyType({
    "free": ScenarioSettings(dose_uM=20.0, half_life_h=None, t_end_h=6.0),
    "liposome": ScenarioSettings(dose_uM=100.0, half_life_h=20.0, t_end_h=48.0),
    "ph_sensitive": ScenarioSettings(dose_uM=100.0, half_life_h=20.0, t_end_h=48.0),
    "thermosensitive": ScenarioSettings(dose_uM=100.0, half_life_h=2.0, t_end_h=24.0, heating=Heating()),
    "liposome_rt": ScenarioSettings(dose_uM=100.0, half_life_h=20.0, t_end_h=48.0, ifp_reduction=0.3),
})


# ----------------------------------------------------------------------------- scenario set-up
@dataclasses.dataclass(frozen=True, eq=False)
class ScenarioSetup:
    """Everything :func:`run_scenario` needs for one scenario on one grid.

    Attributes
    ----------
    name, label : str
    settings : ScenarioSettings
    pieces : tuple of Period
        Consecutive periods (two for heating: during, after).
    plasma : PlasmaInput
    local_plasma_free : FieldFunction or None
        Free drug released inside heated vessels, µM, added to the plasma free drug.
    temperature_c : ndarray
        During the first period, °C.
    release_per_h : ndarray
        k_rel during the first period, 1/h (0 for free drug).
    pressure_mmhg : ndarray
        IFP used, mmHg (lowered for ``"liposome_rt"``).
    t_end_h : float
    """

    name: str
    label: str
    settings: ScenarioSettings
    pieces: tuple
    plasma: PlasmaInput
    local_plasma_free: FieldFunction | None
    temperature_c: np.ndarray
    release_per_h: np.ndarray
    pressure_mmhg: np.ndarray
    t_end_h: float


def _check_name(name):
    if not isinstance(name, str) or name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r}", fix=f"Use one of {', '.join(SCENARIOS)}.")
    return name


def _check_ph(ph, grid):
    if ph is None:
        raise InputError("the 'ph_sensitive' scenario needs an extracellular pH map",
                         fix="Pass ph= (e.g. the CEST pH map) on the transport grid.")
    a = np.array(ph, float)
    if a.ndim == 0:
        a = np.full(grid.shape, float(a))
    if a.shape != grid.shape:
        raise GeometryError(f"pH map has shape {a.shape} but the grid is {grid.shape}",
                            fix="Resample the pH map onto the transport grid.")
    tum = np.asarray(grid.tumour, bool)
    bad = ~np.isfinite(a) & tum
    if bad.any():
        raise InputError(f"the pH map is NaN or infinite in {int(bad.sum())} tumour voxels",
                         fix="Fill or mask them (the release rate of pH-sensitive carriers needs a pH there).")
    a[~np.isfinite(a)] = HOST_PH
    return a


def _heated_temperature(grid, heating, centre_vox):
    tum = np.asarray(grid.tumour, bool)
    if centre_vox is None:
        centre_vox = ndimage.center_of_mass(tum)
    c = np.asarray(centre_vox, float)
    if c.shape != (len(tum.shape),) or not np.all(np.isfinite(c)):
        raise InputError(f"centre_vox = {centre_vox!r} is not one voxel position per axis",
                         fix="Give the heating focus in voxel indices, e.g. (31.5, 30.2).")
    r_mm = np.hypot(*(np.indices(tum.shape) - c[:, None, None])) * grid.spacing_um / 1e3
    radius_mm = heating.radius_frac * math.sqrt(tum.sum() / math.pi) * grid.spacing_um / 1e3
    return hyperthermia_temperature(r_mm, radius_mm=radius_mm, edge_mm=heating.edge_mm,
                                    target_c=heating.temperature_c)


def scenario_setup(name: str, grid: TissueGrid, base: TransportParams, *, ph=None, centre_vox=None,
                   settings: ScenarioSettings | None = None, pressure_mmhg=None) -> ScenarioSetup:
    r"""Periods, plasma, intravascular release, temperature, release and IFP maps of one scenario.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.
    grid : TissueGrid
        2D voxel grid of the tumour (``"thermosensitive"`` needs 2D).
    base : TransportParams
        Tissue parameters (permeability, interstitial fraction, fluid ...); the scenario sets
        ``release_per_h``.
    ph : ndarray, optional
        Extracellular pH on the grid; required for ``"ph_sensitive"`` (NaN allowed outside the
        tumour, taken as :data:`HOST_PH`).
    centre_vox : (float, float), optional
        Heating focus, voxel indices; default the tumour's centre of mass.
    settings : ScenarioSettings, optional
        Default ``DEFAULT_SETTINGS[name]``.
    pressure_mmhg : ndarray, optional
        Baseline IFP, mmHg; default ``interstitial_pressure(grid, base.fluid)``.

    Returns
    -------
    ScenarioSetup

    Raises
    ------
    InputError
        Unknown scenario, missing pH or NaN pH in the tumour, maps not on the grid.

    Examples
    --------
    >>> tum = np.zeros((24, 24), bool); tum[6:18, 6:18] = True
    >>> g = TissueGrid(100.0, np.where(tum, 0.02, 0.01), tum)
    >>> s = scenario_setup("liposome_rt", g, TransportParams())
    >>> len(s.pieces), s.t_end_h
    (1, 48.0)
    """
    _check_name(name)
    check_grid(grid)
    param_fields(base, grid.shape)
    st = DEFAULT_SETTINGS[name] if settings is None else settings
    if not isinstance(st, ScenarioSettings):
        raise InputError(f"settings must be ScenarioSettings, got {type(st).__name__}",
                         fix="Use ScenarioSettings(...) or None for the defaults.")
    shape = grid.shape
    if pressure_mmhg is None:
        p = interstitial_pressure(grid, base.fluid)
    else:
        p = np.array(pressure_mmhg, float)
        if p.shape != shape or not np.all(np.isfinite(p)):
            raise GeometryError(f"pressure_mmhg has shape {p.shape} (grid {shape}) or non-finite values",
                                fix="Give a finite IFP map (mmHg) on the grid, or None to solve for it.")
    if st.ifp_reduction:
        p = (1.0 - st.ifp_reduction) * p
    temp = np.full(shape, 37.0)
    local = None
    if name == "free":
        plasma = PlasmaInput.free_drug(st.dose_uM)
        params = dataclasses.replace(base, release_per_h=0.0)
        pieces = [Period(st.t_end_h, params, default_dt_h(params))]
        rate = np.zeros(shape)
    elif st.heating is None:
        plasma = PlasmaInput.liposomal(st.dose_uM, st.half_life_h)
        law = release_law("ph_sensitive" if name == "ph_sensitive" else "liposome")
        if name == "ph_sensitive":
            rate = law.rate_per_h(ph=_check_ph(ph, grid))
            params = dataclasses.replace(base, release_per_h=rate)
        else:
            params = dataclasses.replace(base, release_per_h=float(law.rate_per_h()))
            rate = np.full(shape, params.release_per_h)
        pieces = [Period(st.t_end_h, params, default_dt_h(params))]
    else:
        if name != "thermosensitive" or grid.ndim != 2:
            raise InputError(f"heating is modelled for the 2D 'thermosensitive' scenario, not {name!r} "
                             f"on a {grid.ndim}D grid", fix="Drop the heating or use the 'thermosensitive' scenario.")
        law = release_law("thermosensitive")
        plasma = PlasmaInput.liposomal(st.dose_uM, st.half_life_h)
        temp = _heated_temperature(grid, st.heating, centre_vox)
        rate = law.rate_per_h(temperature_c=temp)
        cool = float(law.rate_per_h(temperature_c=37.0))
        heated = dataclasses.replace(base, release_per_h=rate)
        after = dataclasses.replace(base, release_per_h=cool)
        heat_h = st.heating.duration_h
        pieces = [Period(heat_h, heated, default_dt_h(heated)), Period(st.t_end_h, after, default_dt_h(after))]
        tau_s = st.heating.transit_time_s
        frac_hot = -np.expm1(-rate * tau_s / 3600.0)
        frac_cool = -math.expm1(-cool * tau_s / 3600.0)

        def released_in_vessels(t_h):
            return float(plasma.carrier_uM(t_h)) * (frac_hot if t_h <= heat_h + 1e-9 else frac_cool)
        local = FieldFunction(released_in_vessels, shape)
    return ScenarioSetup(name=name, label=SCENARIOS[name], settings=st, pieces=tuple(pieces), plasma=plasma,
                         local_plasma_free=local, temperature_c=temp, release_per_h=np.asarray(rate, float),
                         pressure_mmhg=p, t_end_h=float(st.t_end_h))


# ----------------------------------------------------------------------------- runs
def default_save_times_h(t_end_h: float, *, fine_until_h: float = 2.0, fine_step_h: float = 0.05,
                         n_coarse: int = 160) -> np.ndarray:
    """Save times for a free-drug AUC: every ``fine_step_h`` to ``fine_until_h``, then at most ``n_coarse`` steps.

    Free drug peaks within minutes of a free injection or of heating, then varies slowly.

    Examples
    --------
    >>> t = default_save_times_h(6.0)
    >>> float(t[1]), float(t[-1]), len(default_save_times_h(48.0))
    (0.05, 6.0, 201)
    """
    t_end, step = float(t_end_h), float(fine_step_h)
    t_fine = min(float(fine_until_h), t_end)
    fine = np.arange(0.0, t_fine + 1e-9, step)
    n = max(1, min(int(n_coarse), int(math.ceil((t_end - t_fine) / step - 1e-9))))
    return np.unique(np.round(np.concatenate([fine, np.linspace(t_fine, t_end, n + 1)]), 9))


def _save_times(setup, t_end_h):
    """Default saves: every 0.05 h for 2 h; with heating every 0.0125 h until 15 min after it (this work:
    free-drug AUC within 0.2 % of saving every step on the phantom)."""
    heat = setup.settings.heating
    if heat is None:
        return default_save_times_h(t_end_h)
    return default_save_times_h(t_end_h, fine_until_h=heat.duration_h + 0.25, fine_step_h=0.0125)


def _check_setup(setup):
    if not isinstance(setup, ScenarioSetup):
        raise InputError(f"expected a ScenarioSetup, got {type(setup).__name__}", fix="Use scenario_setup(...).")


def run_scenario(setup: ScenarioSetup, grid: TissueGrid, *, save_times_h=None) -> TransportSolution:
    """Simulate one scenario on its voxel grid.

    Parameters
    ----------
    setup : ScenarioSetup
    grid : TissueGrid
        The grid ``setup`` was built on.
    save_times_h : array-like, optional
        Default :func:`default_save_times_h`, dense early for the free-drug AUC (every 0.05 h
        for 2 h; with heating every 0.0125 h until 15 min after it).

    Returns
    -------
    TransportSolution

    Examples
    --------
    >>> tum = np.zeros((24, 24), bool); tum[6:18, 6:18] = True
    >>> g = TissueGrid(100.0, np.where(tum, 0.02, 0.01), tum)
    >>> sol = run_scenario(scenario_setup("free", g, TransportParams()), g)
    >>> float(sol.times_h[-1]), bool(sol.encapsulated.max() == 0)
    (6.0, True)
    """
    _check_setup(setup)
    check_grid(grid)
    if grid.shape != setup.pressure_mmhg.shape:
        raise GeometryError(f"the grid is {grid.shape} but the scenario was set up on {setup.pressure_mmhg.shape}",
                            fix="Run the setup on the grid it was built for.")
    save = _save_times(setup, setup.t_end_h) if save_times_h is None else save_times_h
    if len(setup.pieces) == 1:
        t_end, params, dt = setup.pieces[0]
        return simulate(grid, params, setup.plasma, t_end_h=t_end, dt_h=dt, save_times_h=save,
                        pressure_mmhg=setup.pressure_mmhg, local_plasma_free=setup.local_plasma_free)
    return simulate_piecewise(grid, setup.plasma, setup.pieces, save_times_h=save, pressure_mmhg=setup.pressure_mmhg,
                              local_plasma_free=setup.local_plasma_free)


def run_window(setup: ScenarioSetup, grid_window: TissueGrid, ij, *, t_end_h: float | None = None,
               save_times_h=None) -> TransportSolution:
    """Simulate one scenario in a micro window around voxel ``ij`` (parameters and IFP of that voxel).

    Parameters
    ----------
    setup : ScenarioSetup
    grid_window : TissueGrid
        E.g. :func:`~core.drug_release.microwindow.micro_window`.
    ij : (int, int)
        The voxel of ``setup``'s grid the window stands for.
    t_end_h : float, optional
        Default the scenario's ``t_end_h``.
    save_times_h : array-like, optional
        Default as :func:`run_scenario`.

    Returns
    -------
    TransportSolution
        Uniform IFP (the voxel's), so no Darcy flow in the window; time step at most 0.05 h.
    """
    _check_setup(setup)
    check_grid(grid_window)
    ij = tuple(int(v) for v in ij)
    t_end = setup.t_end_h if t_end_h is None else float(t_end_h)
    pieces = window_periods(setup.pieces, ij, t_end)
    loc = None if setup.local_plasma_free is None else FieldFunction(setup.local_plasma_free.at_point(ij),
                                                                     grid_window.shape)
    save = _save_times(setup, t_end) if save_times_h is None else save_times_h
    return simulate_piecewise(grid_window, setup.plasma, pieces, save_times_h=save,
                              pressure_mmhg=float(setup.pressure_mmhg[ij]), local_plasma_free=loc)


# ----------------------------------------------------------------------------- comparison
@dataclasses.dataclass(frozen=True, eq=False)
class ScenarioOutcome:
    """Outcome of one scenario (free-drug exposure).

    Attributes
    ----------
    name, label : str
    lethal_fraction_voxel : float
        Share of tumour voxels with AUC >= threshold (voxel scale).
    lethal_fraction_window : float
        Share of non-vessel pixels of the micro window with AUC >= threshold.
    median_auc_uM_h : float
        Median free-drug AUC over tumour voxels, µM·h.
    penetration_um : float
        1/e penetration distance of the AUC from vessels in the window, µm (NaN if undefined).
    auc_uM_h : ndarray
        Free-drug AUC map, µM·h.
    window : dict
        :func:`~core.drug_release.microwindow.window_outcomes` of the window.
    window_ij : tuple
    runtime_s : float
        Wall time of the scenario (voxel grid + window), s.
    """

    name: str
    label: str
    lethal_fraction_voxel: float
    lethal_fraction_window: float
    median_auc_uM_h: float
    penetration_um: float
    auc_uM_h: np.ndarray
    window: dict = dataclasses.field(default_factory=dict)
    window_ij: tuple = ()
    runtime_s: float = float("nan")


def compare_scenarios(grid: TissueGrid, base: TransportParams, *, ph=None, pressure_mmhg=None,
                      names: Sequence[str] | None = None, window_ij=None,
                      threshold_uM_h: float = DEFAULT_LETHAL_AUC_UM_H, seed: int = 0,
                      progress: Callable[[float, str], None] | None = None,
                      settings: dict | None = None, centre_vox=None,
                      window_spacing_um: float = WINDOW_SPACING_UM, window_voxels: int = WINDOW_VOXELS,
                      vessel_radius_um: float = 6.0) -> list:
    """Compare drug-delivery scenarios on one tumour grid and one micro window (module docstring).

    Parameters
    ----------
    grid : TissueGrid
        2D voxel grid (vessel surface, tumour, lymphatics).
    base : TransportParams
        Tissue parameters shared by all scenarios.
    ph : ndarray, optional
        Extracellular pH map (required when ``"ph_sensitive"`` is compared).
    pressure_mmhg : ndarray, optional
        Baseline IFP, mmHg; default solved once from ``base.fluid``.
    names : sequence of str, optional
        Default all of :data:`SCENARIOS`, in that order.
    window_ij : (int, int), optional
        Voxel of the micro window; default :func:`~core.drug_release.microwindow.default_window_voxel`.
    threshold_uM_h : float, default=DEFAULT_LETHAL_AUC_UM_H (1.0)
        Lethal free-drug AUC, µM·h.
    seed : int, default=0
        Seed of the window's vessel reconstruction (the same window for every scenario).
    progress : callable(fraction, message), optional
    settings : dict of str to ScenarioSettings, optional
        Overrides of :data:`DEFAULT_SETTINGS` per scenario.
    centre_vox : (float, float), optional
        Heating focus; default the tumour's centre of mass.
    window_spacing_um, window_voxels, vessel_radius_um : float, int, float
        Micro-window pixel (4 µm), neighbourhood (5 voxels) and capillary radius (6 µm).

    Returns
    -------
    list of ScenarioOutcome
        In the order of ``names``.

    Examples
    --------
    >>> tum = np.zeros((24, 24), bool); tum[6:18, 6:18] = True
    >>> g = TissueGrid(100.0, np.where(tum, 0.02, 0.01), tum)
    >>> out = compare_scenarios(g, TransportParams(), names=["free"])     # doctest: +SKIP
    >>> out[0].name, 0 <= out[0].lethal_fraction_voxel <= 1               # doctest: +SKIP
    ('free', True)
    """
    check_grid(grid)
    if grid.ndim != 2:
        raise GeometryError(f"the comparison runs on a 2D slice, got a {grid.ndim}D grid", fix="Give one 2D slice.")
    names = list(SCENARIOS) if names is None else list(names)
    if not names:
        raise InputError("no scenario to compare", fix=f"Give names from {', '.join(SCENARIOS)}.")
    for n in names:
        _check_name(n)
    settings = dict(settings or {})
    for k in settings:
        _check_name(k)
    if "ph_sensitive" in names:
        _check_ph(ph, grid)
    thr = float(threshold_uM_h)
    if not math.isfinite(thr) or thr <= 0:
        raise InputError(f"threshold_uM_h = {threshold_uM_h!r} is not a positive exposure",
                         fix="Give the lethal exposure in µM·h, e.g. 1.0.")
    param_fields(base, grid.shape)
    p0 = interstitial_pressure(grid, base.fluid) if pressure_mmhg is None else pressure_mmhg
    ij = default_window_voxel(grid) if window_ij is None else tuple(int(v) for v in window_ij)
    win = micro_window(grid.vessel_surface_per_um, ij, spacing_um=window_spacing_um, voxel_um=grid.spacing_um,
                       n_voxels=window_voxels, vessel_radius_um=vessel_radius_um, seed=seed)
    out = []
    for k, name in enumerate(names):
        t0 = time.perf_counter()
        setup = scenario_setup(name, grid, base, ph=ph, centre_vox=centre_vox, settings=settings.get(name),
                               pressure_mmhg=p0)
        if progress:
            progress(k / len(names), f"{setup.label}: tumour grid")
        auc = exposure_auc(run_scenario(setup, grid), "free")
        if progress:
            progress((k + 0.5) / len(names), f"{setup.label}: micro window")
        w = window_outcomes(win, run_window(setup, win, ij), threshold_uM_h=thr)
        tum = np.asarray(grid.tumour, bool)
        out.append(ScenarioOutcome(name=name, label=setup.label,
                                   lethal_fraction_voxel=lethal_fraction(auc, tum, thr),
                                   lethal_fraction_window=w["lethal_fraction"],
                                   median_auc_uM_h=float(np.median(auc[tum])), penetration_um=w["penetration_um"],
                                   auc_uM_h=auc, window=w, window_ij=ij, runtime_s=time.perf_counter() - t0))
    if progress:
        progress(1.0, "done")
    return out
