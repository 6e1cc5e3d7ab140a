"""Radionuclide half-lives and decay-correction arithmetic shared by the image readers.

Half-lives (seconds) of the radionuclides met in PET and SPECT imaging and in
radionuclide therapy. Values are the evaluated half-lives of the NNDC NuDat 3
database (National Nuclear Data Center, Brookhaven; https://www.nndc.bnl.gov/nudat3/),
which for these nuclides agree with the LNHB/DDEP recommended data
(http://www.lnhb.fr/ddep_wg/) to better than 0.1 %:

=========  ===================  ==============
nuclide    half-life            seconds
=========  ===================  ==============
11C        20.364 min           1221.84
13N        9.965 min            597.9
15O        122.24 s             122.24
18F        109.77 min           6586.2
64Cu       12.701 h             45723.6
68Ga       67.71 min            4062.6
82Rb       1.2575 min           75.45
89Zr       78.41 h              282276
90Y        64.05 h              230580
99mTc      6.0067 h             21624.12
111In      2.8047 d             242326.08
123I       13.2235 h            47604.6
124I       4.1760 d             360806.4
131I       8.0252 d             693377.28
177Lu      6.647 d              574300.8
=========  ===================  ==============

The dosimetry engine takes its nuclear data, half-lives included, from ``radioactivedecay``
(ICRP Publication 107) as its issue requires; for the therapy nuclides read here (90Y, 131I,
177Lu) the two sources agree to better than 0.1 % (``tests/unit/test_dosimetry_nuclides.py``),
while for short-lived PET nuclides NuDat's newer evaluations differ from ICRP 107 by up to 1.2 %
(82Rb), which is why image decay correction keeps this table.

Decay correction (PS3.3 C.8.9.1, "Decay Correction"): an image whose voxel values are
decay-corrected to time :math:`t_\\mathrm{ref}` (seconds after injection) holds

.. math::

    C_\\mathrm{ref} = C(t)\\, 2^{(t - t_\\mathrm{ref})/T_{1/2}},

so moving the reference from :math:`t_a` to :math:`t_b` multiplies the values by
:math:`2^{(t_a - t_b)/T_{1/2}}`. For a frame :math:`[s, s + \\Delta]` the time at which
the instantaneous activity equals the frame average (the DICOM Frame Reference Time,
PS3.3 C.8.9.4.1.5, for a source that only decays) is

.. math::

    t_\\mathrm{eff} = s + \\frac{1}{\\lambda}\\ln\\frac{\\lambda\\Delta}{1 - e^{-\\lambda\\Delta}},
    \\qquad \\lambda = \\ln 2 / T_{1/2}.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np

from core.imaging.volume import DynamicVolume, Volume

__all__ = [
    "HALF_LIFE_S",
    "canonical_radionuclide",
    "radionuclide_half_life_s",
    "frame_reference_offset_s",
    "change_decay_reference",
]

#: Half-life in seconds by canonical radionuclide name (see module docstring for sources).
HALF_LIFE_S: dict[str, float] = {
    "11C": 1221.84,       # 20.364 min
    "13N": 597.9,         # 9.965 min
    "15O": 122.24,
    "18F": 6586.2,        # 109.77 min
    "64Cu": 45723.6,      # 12.701 h
    "68Ga": 4062.6,       # 67.71 min
    "82Rb": 75.45,        # 1.2575 min
    "89Zr": 282276.0,     # 78.41 h
    "90Y": 230580.0,      # 64.05 h
    "99mTc": 21624.12,    # 6.0067 h
    "111In": 242326.08,   # 2.8047 d
    "123I": 47604.6,      # 13.2235 h
    "124I": 360806.4,     # 4.1760 d
    "131I": 693377.28,    # 8.0252 d
    "177Lu": 574300.8,    # 6.647 d
}

_ELEMENT_NAMES = {
    "carbon": "C", "nitrogen": "N", "oxygen": "O", "fluorine": "F", "copper": "Cu",
    "gallium": "Ga", "rubidium": "Rb", "zirconium": "Zr", "yttrium": "Y",
    "technetium": "Tc", "indium": "In", "iodine": "I", "lutetium": "Lu",
}
_SYMBOLS = {re.sub(r"^\d+m?", "", name).lower(): re.sub(r"^\d+m?", "", name) for name in HALF_LIFE_S}


def canonical_radionuclide(name: str | None) -> str | None:
    """Canonical spelling (``"18F"``, ``"99mTc"``) of a radionuclide name, or None.

    Accepts the spellings found in PET-BIDS (``"F18"``), DICOM code meanings
    (``"^18^Fluorine"``), and common free text (``"F-18"``, ``"Tc-99m"``, ``"177Lu"``).
    Returns None when the name is not understood or not in :data:`HALF_LIFE_S`.

    Examples
    --------
    >>> canonical_radionuclide("F18"), canonical_radionuclide("^18^Fluorine")
    ('18F', '18F')
    >>> canonical_radionuclide("Tc-99m")
    '99mTc'
    """
    if not name:
        return None
    text = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for word, symbol in _ELEMENT_NAMES.items():
        text = text.replace(word, symbol.lower())
    candidates = []
    m = re.fullmatch(r"(\d+)(m?)([a-z]{1,2})", text)
    if m:
        candidates.append((m.group(1), m.group(2), m.group(3)))
        if m.group(2):  # "99mo..." could also be mass 99 + element "mo"
            candidates.append((m.group(1), "", "m" + m.group(3)))
    m = re.fullmatch(r"([a-z]{1,2})(\d+)(m?)", text)
    if m:
        candidates.append((m.group(2), m.group(3), m.group(1)))
    for mass, meta, element in candidates:
        symbol = _SYMBOLS.get(element)
        if symbol is None:
            continue
        key = f"{mass}{meta}{symbol}"
        if key in HALF_LIFE_S:
            return key
    return None


def radionuclide_half_life_s(name: str | None) -> float | None:
    """Physical half-life in seconds of a radionuclide, or None when unknown.

    Examples
    --------
    >>> radionuclide_half_life_s("F18")
    6586.2
    """
    key = canonical_radionuclide(name)
    return HALF_LIFE_S.get(key) if key else None


def frame_reference_offset_s(frame_duration_s, half_life_s: float | None):
    """Offset (s) from frame start to the decay-weighted frame reference time.

    ``ln(lambda*D / (1 - exp(-lambda*D))) / lambda`` for duration ``D``; half the
    duration when the half-life is unknown (the limit of a long half-life).
    """
    d = np.asarray(frame_duration_s, dtype=float)
    if not half_life_s or not math.isfinite(half_life_s) or half_life_s <= 0:
        return 0.5 * d
    lam = math.log(2.0) / half_life_s
    x = lam * d
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x > 1e-9, np.log(x / -np.expm1(-x)) / lam, 0.5 * d)
    return out


def _current_reference_s(vol: Volume) -> float | None:
    """Seconds after injection to which ``vol`` is decay-corrected, or None if not corrected."""
    if isinstance(vol, DynamicVolume):
        if not vol.decay_corrected or vol.decay_reference == "none":
            return None
        if vol.decay_reference == "injection":
            return 0.0
    if vol.dose is not None and math.isfinite(vol.dose.decay_interval_s):
        return float(vol.dose.decay_interval_s)
    if isinstance(vol, DynamicVolume) and len(vol.frame_start_s):
        return float(vol.frame_start_s[0])
    return 0.0


def change_decay_reference(vol: Volume, reference_s: float) -> Volume:
    """The same PET image with voxel values decay-corrected to another time.

    Parameters
    ----------
    vol : Volume or DynamicVolume
        PET image, decay-corrected, with a dose record that holds the half-life.
    reference_s : float
        New reference time in seconds after injection (0: injection).

    Returns
    -------
    Volume or DynamicVolume
        Values multiplied by ``2 ** ((t_old - t_new) / half_life_s)``; the dose record's
        ``decay_interval_s`` becomes ``reference_s`` so that SUV is unchanged; a dynamic
        volume's ``decay_reference`` becomes ``"injection"`` (``reference_s == 0``) or
        ``"scan_start"``.

    Raises
    ------
    ValueError
        When the image is not decay-corrected or the half-life is unknown.
    """
    old = _current_reference_s(vol)
    if old is None:
        raise ValueError("the image is not decay-corrected; its decay reference cannot be moved")
    half_life = vol.dose.half_life_s if vol.dose is not None else None
    if not half_life or not math.isfinite(half_life) or half_life <= 0:
        raise ValueError("moving the decay reference needs the radionuclide half-life")
    factor = 2.0 ** ((old - float(reference_s)) / half_life)
    dose = replace(vol.dose, decay_interval_s=float(reference_s))
    data = (vol.data * factor).astype(vol.data.dtype, copy=False)
    changes = {"dose": dose}
    if isinstance(vol, DynamicVolume):
        changes["decay_reference"] = "injection" if abs(reference_s) < 1e-9 else "scan_start"
        changes["decay_corrected"] = True
    return vol.with_data(data, **changes)

