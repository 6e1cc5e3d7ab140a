r"""Acquisition sites of the synthetic cohort: scanner resolution, noise, framing, dosing.

Each site stands for a class of scanner and local protocol, so that a cohort generated
at site ``"B"`` or ``"C"`` tests external validation and harmonisation against one
from ``"A"``. The *patients* (anatomy, biology, kinetics) come from the seed only; the
site changes how they are imaged (and the injected activity policy). The same seed at
two sites is therefore the same patients scanned twice, a different seed is new
patients.

Noise model
-----------
Reconstructed-voxel noise is taken Poisson-like (Logan et al. 2001; Varga & Szabo
2002): the variance of a decay-corrected frame value :math:`C` (Bq/ml) is

.. math::

    \sigma^2 = \mathrm{CoV_{ref}}^2\, C_\mathrm{ref}\, \Delta t_\mathrm{ref}\;
               \frac{C \cdot \mathrm{DF}}{\Delta t},

i.e. proportional to the true (decayed) counts, with DF the frame decay factor
(:func:`core.phantoms.frames.frame_decay_factors`). The site's reference coefficient of
variation :math:`\mathrm{CoV_{ref}}` (a 300 s frame of 5 kBq/ml at injection time) scales
with count sensitivity and time-of-flight gain as
:math:`(S\,G_\mathrm{TOF})^{-1/2}` and with resolution as :math:`\mathrm{FWHM}^{-3/2}`
(noise of smoothed white noise in 3D), anchored at 10 % for site A (our calibration to
the look of clinical 4-min FDOPA frames). :math:`G_\mathrm{TOF} = D / (c\,\Delta\tau/2)`
with an effective head diameter :math:`D = 20` cm (Conti 2011); 1 for non-TOF.

Sources for the scanner figures
-------------------------------
* Digital SiPM PET/CT (Biograph Vision class): sensitivity 16.4 kcps/MBq, TOF 214 ps,
  NEMA resolution 3.6 mm (van Sluis et al., J Nucl Med 2019;60:1031-1036).
* PMT TOF PET/CT (Biograph mCT class): 9.7 kcps/MBq, TOF 540 ps, 4.4 mm (Jakoby et al.,
  Phys Med Biol 2011;56:2375-2389).
* PET/MR without TOF (Biograph mMR class): 15.0 kcps/MBq, 4.3 mm (Delso et al.,
  J Nucl Med 2011;52:1914-1922).
* Effective reconstructed FWHM (OSEM + post-filter, brain protocols) is larger than the
  NEMA value: 4.5, 6.0 and 5.0 mm are typical clinical brain reconstructions.
* Injected activity: weight-based 2-4 MBq/kg or a fixed ~185-200 MBq for FDOPA, within
  the joint EANM/EANO/RANO/SNMMI guideline (Law et al., EJNMMI 2019;46:540-557).
* Frame schedules: dynamic acquisition from injection over 30 min as in the Nancy FDOPA
  glioma protocol (Ginet et al., EJNMMI 2020;47:1381-1390; Zaragori et al., EJNMMI Res
  2020;10:56), with short frames for the bolus. Site B starts as in the Rennes schedule
  (8 x 15 s, 2 x 30 s ...; Girard et al., Quant Imaging Med Surg, PSF study of dynamic
  FDOPA) and keeps 5 min frames after 5 min. Site C extends to 40 min. The exact block
  lengths are ours; every schedule has frame boundaries at 10 and 30 min so that the
  10-30 min static image is a sum of whole frames.

Conti M. Why is TOF PET reconstruction a more robust method in the presence of
inconsistent data? Phys Med Biol 2011;56:155-168.
Logan J, Fowler JS, Volkow ND, et al. A strategy for removing the bias in the graphical
analysis method. J Cereb Blood Flow Metab 2001;21:307-320.
Varga J, Szabo Z. Modified regression model for the Logan plot. J Cereb Blood Flow Metab
2002;22:240-244.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.phantoms.frames import frame_schedule

__all__ = ["Site", "SITES", "get_site", "site_table_markdown"]

_C_MM_PER_PS = 0.299792458  # speed of light, mm/ps
_HEAD_DIAMETER_MM = 200.0
_REFERENCE = {"cov": 0.10, "sensitivity": 16.4, "tof_ps": 214.0, "fwhm_mm": 4.5}


def _tof_gain(tof_ps: float | None) -> float:
    if not tof_ps:
        return 1.0
    return _HEAD_DIAMETER_MM / (_C_MM_PER_PS * tof_ps / 2.0)


@dataclass(frozen=True)
class Site:
    """One acquisition site.

    Attributes
    ----------
    name : str
        ``"A"``, ``"B"`` or ``"C"``.
    description : str
        Scanner class and reconstruction, in words.
    manufacturer, model : str
        What the DICOM headers will say (generic, not a vendor claim).
    fwhm_mm : float
        Effective isotropic resolution of the reconstructed images (Gaussian PSF).
    voxel_size_mm : float
        Isotropic PET voxel size.
    frame_blocks : tuple of (int, float)
        Frame schedule as ``(count, duration_s)`` blocks from injection.
    sensitivity_kcps_per_mbq : float
        NEMA NU-2 system sensitivity.
    tof_resolution_ps : float or None
        Coincidence timing resolution; None for non-TOF.
    activity_mbq_per_kg : float or None
        Weight-based injected activity; None when ``fixed_activity_mbq`` applies.
    fixed_activity_mbq : float or None
        Fixed injected activity.
    """

    name: str
    description: str
    manufacturer: str
    model: str
    fwhm_mm: float
    voxel_size_mm: float
    frame_blocks: tuple[tuple[int, float], ...]
    sensitivity_kcps_per_mbq: float
    tof_resolution_ps: float | None
    activity_mbq_per_kg: float | None = None
    fixed_activity_mbq: float | None = None

    @property
    def tof_gain(self) -> float:
        """Effective sensitivity gain of TOF for a 20 cm head, :math:`D/(c\\Delta\\tau/2)`."""
        return _tof_gain(self.tof_resolution_ps)

    @property
    def noise_cov_ref(self) -> float:
        """Voxel CoV of a 300 s frame of 5 kBq/ml at injection time (see module docstring)."""
        ref_sg = _REFERENCE["sensitivity"] * _tof_gain(_REFERENCE["tof_ps"])
        sg = self.sensitivity_kcps_per_mbq * self.tof_gain
        return _REFERENCE["cov"] * math.sqrt(ref_sg / sg) * (_REFERENCE["fwhm_mm"] / self.fwhm_mm) ** 1.5

    @property
    def noise_correlation_fwhm_mm(self) -> float:
        """Correlation length of the voxel noise (a simplification: 0.6 x the resolution)."""
        return 0.6 * self.fwhm_mm

    @property
    def frame_start_s(self) -> np.ndarray:
        return frame_schedule(self.frame_blocks)[0]

    @property
    def frame_duration_s(self) -> np.ndarray:
        return frame_schedule(self.frame_blocks)[1]

    @property
    def n_frames(self) -> int:
        return int(sum(c for c, _ in self.frame_blocks))

    @property
    def scan_duration_min(self) -> float:
        return float(sum(c * d for c, d in self.frame_blocks)) / 60.0

    def injected_activity_mbq(self, body_weight_kg: float) -> float:
        """Prescribed activity before the syringe's random variation."""
        if self.activity_mbq_per_kg is not None:
            return self.activity_mbq_per_kg * float(body_weight_kg)
        return float(self.fixed_activity_mbq)


SITES: dict[str, Site] = {
    "A": Site(
        name="A",
        description="digital SiPM TOF PET/CT, OSEM+PSF+TOF, 4.5 mm effective FWHM",
        manufacturer="TheraBoard Synthetic",
        model="Digital TOF PET/CT (Vision class)",
        fwhm_mm=4.5,
        voxel_size_mm=2.5,
        frame_blocks=((12, 10.0), (6, 30.0), (5, 60.0), (5, 240.0)),
        sensitivity_kcps_per_mbq=16.4,
        tof_resolution_ps=214.0,
        activity_mbq_per_kg=3.0,
    ),
    "B": Site(
        name="B",
        description="PMT TOF PET/CT, OSEM+TOF with Gaussian post-filter, 6.0 mm effective FWHM",
        manufacturer="TheraBoard Synthetic",
        model="PMT TOF PET/CT (mCT class)",
        fwhm_mm=6.0,
        voxel_size_mm=3.0,
        frame_blocks=((8, 15.0), (2, 30.0), (2, 60.0), (5, 300.0)),
        sensitivity_kcps_per_mbq=9.7,
        tof_resolution_ps=540.0,
        activity_mbq_per_kg=2.0,
    ),
    "C": Site(
        name="C",
        description="PET/MR without TOF, OSEM+PSF, 5.0 mm effective FWHM, 40 min protocol",
        manufacturer="TheraBoard Synthetic",
        model="PET/MR non-TOF (mMR class)",
        fwhm_mm=5.0,
        voxel_size_mm=2.5,
        frame_blocks=((6, 10.0), (3, 20.0), (6, 30.0), (5, 60.0), (6, 300.0)),
        sensitivity_kcps_per_mbq=15.0,
        tof_resolution_ps=None,
        fixed_activity_mbq=200.0,
    ),
}


def get_site(site: str | Site) -> Site:
    """The :class:`Site` named ``site`` (``"A"``, ``"B"``, ``"C"``), or ``site`` itself."""
    if isinstance(site, Site):
        return site
    key = str(site).strip().upper()
    if key not in SITES:
        raise InputError(f"unknown site {site!r}", fix=f"Use one of {', '.join(sorted(SITES))}.")
    return SITES[key]


def site_table_markdown() -> str:
    """The sites as a Markdown table (for the README and the dashboard).

    Examples
    --------
    >>> print(site_table_markdown().splitlines()[0])
    | site | scanner class | FWHM (mm) | voxel (mm) | frames | duration (min) | sensitivity (kcps/MBq) | TOF (ps) | noise CoV_ref | activity |
    """
    head = ("| site | scanner class | FWHM (mm) | voxel (mm) | frames | duration (min) | "
            "sensitivity (kcps/MBq) | TOF (ps) | noise CoV_ref | activity |")
    rows = [head, "|" + "---|" * 10]
    for s in SITES.values():
        blocks = ", ".join(f"{c}x{d:g}s" for c, d in s.frame_blocks)
        activity = (f"{s.activity_mbq_per_kg:g} MBq/kg" if s.activity_mbq_per_kg is not None
                    else f"{s.fixed_activity_mbq:g} MBq fixed")
        rows.append(
            f"| {s.name} | {s.model} | {s.fwhm_mm:g} | {s.voxel_size_mm:g} | {s.n_frames} ({blocks}) | "
            f"{s.scan_duration_min:g} | {s.sensitivity_kcps_per_mbq:g} | {s.tof_resolution_ps or 'none'} | "
            f"{s.noise_cov_ref:.3f} | {activity} |"
        )
    return "\n".join(rows)
