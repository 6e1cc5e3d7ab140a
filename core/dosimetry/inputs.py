"""From a quantitative SPECT (or PET) time series and a CT to the maps the dose engines need.

:func:`prepare_inputs` is the boundary of the dosimetry engine. It

* checks the time points (after injection, strictly increasing) and undoes decay correction
  when the images were decay-corrected (the dose needs the activity present at scan time);
* converts concentrations (Bq/ml, kBq/ml or MBq/ml) to MBq per voxel and checks the total of
  each time point against the administered activity decayed to that time: a total above it
  (more than the margin) or a thousand-fold off means Bq and MBq were mixed up, and the error
  says which factor would fit;
* resamples the CT onto the activity grid (trilinear, air outside the CT) when the grids
  differ, and says so in :attr:`DosimetryInputs.warnings`; grids that do not overlap are an error;
* derives density and material maps from the HU (:func:`core.dosimetry.materials.material_maps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.dosimetry.nuclides import canonical_name, nuclide_data
from core.errors import InputError
from core.imaging.volume import DynamicVolume, Volume, spacing_from_affine

__all__ = ["DosimetryInputs", "prepare_inputs", "check_administered", "activity_unit_factor", "AIR_HU"]

#: HU given to voxels outside the CT's field of view after resampling.
AIR_HU = -1000.0
#: Concentration units understood, as factors to MBq/ml.
_TO_MBQ_PER_ML = {"bq/ml": 1e-6, "kbq/ml": 1e-3, "mbq/ml": 1.0, "bq/cc": 1e-6, "kbq/cc": 1e-3, "mbq/cc": 1.0}
#: How much the imaged total may exceed the decayed administered activity (calibration, noise).
_TOTAL_MARGIN = 1.25


@dataclass(frozen=True)
class DosimetryInputs:
    """Activity, time points and CT-derived maps on one grid.

    Attributes
    ----------
    activity_mbq : ndarray (T, X, Y, Z)
        Activity per voxel at each scan time (not decay-corrected), MBq.
    times_h : ndarray (T,)
        Scan times, hours after injection.
    ct_hu, density_g_ml, material : ndarray (X, Y, Z)
        The CT on the activity grid and its density and material maps.
    affine : ndarray (4, 4)
    voxel_mm : tuple of 3 float
    nuclide : str
    administered_mbq : float
    warnings : tuple of str
        What was done to the data that the reader should know (resampling, decay correction).
    """

    activity_mbq: np.ndarray
    times_h: np.ndarray
    ct_hu: np.ndarray
    density_g_ml: np.ndarray
    material: np.ndarray
    affine: np.ndarray
    voxel_mm: tuple
    nuclide: str
    administered_mbq: float
    warnings: tuple = field(default_factory=tuple)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.voxel_mm)) / 1000.0


def activity_unit_factor(units: str, *, path=None) -> float:
    """Factor from the image's concentration unit to MBq/ml.

    Examples
    --------
    >>> activity_unit_factor("Bq/ml"), activity_unit_factor("kBq/mL")
    (1e-06, 0.001)
    """
    key = str(units or "").replace(" ", "").lower()
    if key not in _TO_MBQ_PER_ML:
        raise InputError(f"the activity image is in {units!r}, not an activity concentration", path=path,
                         fix="Use a quantitative SPECT/PET in Bq/ml (or kBq/ml, MBq/ml); calibrate counts first.")
    return _TO_MBQ_PER_ML[key]


def check_administered(administered_mbq) -> float:
    """The administered activity in MBq, refusing values that are clearly in another unit.

    Therapies give 0.1 MBq (preclinical) to 20 GBq; a value above 1e5 is read as Bq or kBq.
    """
    try:
        value = float(administered_mbq)
    except (TypeError, ValueError):
        raise InputError(f"administered activity {administered_mbq!r} is not a number",
                         fix="Enter the assayed activity in MBq, e.g. 7400 for 7.4 GBq.") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"administered activity {administered_mbq!r} MBq is not positive",
                         fix="Enter the assayed activity in MBq, e.g. 7400 for 7.4 GBq.")
    if value > 1e5:
        guess = "Bq" if value > 1e8 else "kBq"
        raise InputError(f"administered activity {value:g} 'MBq' is above 100 GBq: it looks like {guess}",
                         fix=f"Enter it in MBq ({value / (1e6 if guess == 'Bq' else 1e3):g} MBq if it was {guess}).")
    return value


def _times_h(spect: DynamicVolume, path) -> np.ndarray:
    if not isinstance(spect, DynamicVolume) or spect.n_frames < 1:
        raise InputError("the activity series has no time points", path=path,
                         fix="Import the SPECT of every time point with its acquisition time after injection.")
    start = np.asarray(spect.frame_start_s, float)
    dur = np.asarray(spect.frame_duration_s, float) if np.size(spect.frame_duration_s) else np.zeros_like(start)
    mid_h = (start + 0.5 * dur) / 3600.0
    if not np.all(np.isfinite(mid_h)):
        raise InputError("a time point of the activity series is missing", path=path,
                         fix="Give every scan its time after injection.")
    if np.any(mid_h < 0):
        raise InputError(f"scan times {np.round(mid_h, 2).tolist()} h include one before the injection", path=path,
                         fix="Times are hours after injection; check the injection date and time.")
    if np.any(np.diff(mid_h) <= 0):
        raise InputError(f"scan times {np.round(mid_h, 2).tolist()} h are not strictly increasing", path=path,
                         fix="Order the scans by acquisition time and remove duplicates.")
    return mid_h


def _check_totals(totals_mbq: np.ndarray, times_h: np.ndarray, administered: float, nuclide: str, path) -> None:
    """Imaged totals against the administered activity decayed to each scan."""
    lam_h = nuclide_data(nuclide).decay_constant_per_s * 3600.0
    expected = administered * np.exp(-lam_h * times_h)
    ratio = totals_mbq / expected
    worst = int(np.argmax(np.abs(np.log10(np.maximum(ratio, 1e-30)))))
    r = float(ratio[worst])
    if r > _TOTAL_MARGIN or r < 1e-3:
        hint = ""
        for factor, words in ((1e6, "Bq read as MBq"), (1e3, "kBq read as MBq"), (1e-3, "MBq read as kBq"),
                              (1e-6, "MBq read as Bq")):
            if 0.02 <= r / factor <= _TOTAL_MARGIN:
                hint = f" A factor {factor:g} would fit ({words})."
                break
        raise InputError(f"the image holds {totals_mbq[worst]:.4g} MBq at {times_h[worst]:.1f} h but only "
                         f"{expected[worst]:.4g} MBq of the administered {administered:g} MBq remain then "
                         f"(ratio {r:.3g}).{hint}", path=path,
                         fix="Check the image unit (Bq/ml), the SPECT calibration factor and the administered "
                             "activity (MBq).")


def prepare_inputs(spect: DynamicVolume, ct: Volume, nuclide: str, administered_mbq, *,
                   spect_path=None, ct_path=None) -> DosimetryInputs:
    """Validate a SPECT time series and a CT and put them on the SPECT grid (module docstring).

    Parameters
    ----------
    spect : DynamicVolume
        Activity concentration (Bq/ml, kBq/ml or MBq/ml), one frame per scan; frame start and
        duration in seconds after injection; ``decay_corrected`` says whether to undo correction.
    ct : Volume
        Hounsfield units, any grid overlapping the SPECT.
    nuclide : str
    administered_mbq : float
    spect_path, ct_path : str, optional
        Named in error messages.

    Returns
    -------
    DosimetryInputs
    """
    from core.dosimetry.materials import material_maps
    from core.imaging.resample import resample_to

    nuclide = canonical_name(nuclide)
    administered = check_administered(administered_mbq)
    times_h = _times_h(spect, spect_path)
    data = np.asarray(spect.data, float)
    if data.ndim != 4 or data.shape[-1] != times_h.size:
        raise InputError(f"the activity series has shape {data.shape}; expected (X, Y, Z, {times_h.size})",
                         path=spect_path, fix="Stack one 3D SPECT per time point.")
    if not np.all(np.isfinite(data)):
        raise InputError("the activity series holds NaN or infinite voxels", path=spect_path,
                         fix="Re-export the reconstruction; mask the voxels outside the field of view with 0.")
    warnings: list[str] = []
    voxel_mm = spacing_from_affine(spect.affine)
    voxel_ml = float(np.prod(voxel_mm)) / 1000.0
    factor = activity_unit_factor(spect.units, path=spect_path)
    activity = np.moveaxis(np.clip(data, 0.0, None), -1, 0) * (factor * voxel_ml)
    if spect.decay_corrected:
        lam_h = nuclide_data(nuclide).decay_constant_per_s * 3600.0
        activity = activity * np.exp(-lam_h * times_h)[:, None, None, None]
        warnings.append(f"The images were decay-corrected to {spect.decay_reference}; the correction was undone "
                        f"with the {nuclide} half-life.")
    _check_totals(activity.reshape(times_h.size, -1).sum(1), times_h, administered, nuclide, spect_path)

    ct_data = np.asarray(ct.data, float)
    if ct_data.ndim != 3:
        raise InputError(f"the CT has shape {ct_data.shape}; a 3D image is needed", path=ct_path)
    if not np.all(np.isfinite(ct_data)):
        raise InputError("the CT holds NaN or infinite voxels", path=ct_path, fix="Re-export the CT series.")
    grid = Volume(np.zeros(data.shape[:3], np.float32), spect.affine)
    same = ct_data.shape == data.shape[:3] and np.allclose(ct.affine, spect.affine, atol=1e-3)
    if same:
        ct_on_grid = ct_data
    else:
        ct_on_grid = np.asarray(resample_to(Volume(ct_data.astype(np.float32), ct.affine), grid,
                                            default_value=AIR_HU).data, float)
        inside = ct_on_grid > AIR_HU + 1
        if inside.mean() < 0.05:
            raise InputError("the CT and the SPECT barely overlap (under 5 % of the SPECT field of view)",
                             path=ct_path, fix="Use the CT of the same SPECT/CT session, or register them first.")
        ct_spacing = spacing_from_affine(ct.affine)
        warnings.append(f"The CT ({ct_data.shape[0]}x{ct_data.shape[1]}x{ct_data.shape[2]}, "
                        f"{ct_spacing[0]:.2f}x{ct_spacing[1]:.2f}x{ct_spacing[2]:.2f} mm) was resampled onto the "
                        f"SPECT grid ({data.shape[0]}x{data.shape[1]}x{data.shape[2]}, {voxel_mm[0]:.2f}x"
                        f"{voxel_mm[1]:.2f}x{voxel_mm[2]:.2f} mm) by trilinear interpolation.")
    density, material = material_maps(ct_on_grid)
    return DosimetryInputs(activity_mbq=activity, times_h=times_h, ct_hu=ct_on_grid, density_g_ml=density,
                           material=material, affine=np.asarray(spect.affine, float), voxel_mm=voxel_mm,
                           nuclide=nuclide, administered_mbq=administered, warnings=tuple(warnings))
