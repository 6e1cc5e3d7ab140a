r"""IBSI 1 radiomics features of a region of interest: :func:`extract`.

The feature mathematics is not written here: it is delegated to **mirp**
(Zwanenburg et al.; ``mirp.extract_features``), whose author leads the IBSI and whose
test suite checks the IBSI 1 reference values. This module turns a TheraBoard
:class:`~core.imaging.volume.Volume` (or a file) and a :class:`RadiomicsSettings` into
mirp's options, runs it, and returns the values keyed by **IBSI feature tags** as in
the IBSI 1 reference tables, for example ``morph_volume`` (mm\ :sup:`3`),
``stat_mean``, ``ih_entropy``, ``ivh_v10``, ``cm_joint_max_3D_avg``,
``rlm_sre_3D_comb``, ``szm_sze_3D``, ``dzm_sde_3D``, ``ngt_coarseness_3D``,
``ngl_lde_3D``.

Families: morphology (``morph_``), local intensity (``loc_``), intensity statistics
(``stat_``), intensity histogram (``ih_``), intensity-volume histogram (``ivh_``),
GLCM (``cm_``), GLRLM (``rlm_``), GLSZM (``szm_``), GLDZM (``dzm_``), NGTDM
(``ngt_``) and NGLDM (``ngl_``). GLCM and NGLDM use Chebyshev distance 1 and NGLDM
coarseness :math:`\alpha = 0`, the IBSI 1 reference settings.

Name mapping (mirp 2.x column -> IBSI tag): mirp appends its parameters and the
aggregation in its own words; they are rewritten as IBSI writes them:
``_d1``/``_a0.0`` and ``_fbn_n32``/``_fbs_w0.25`` are dropped (they are in the
settings), ``2d_avg -> 2D_avg``, ``2d_s_mrg -> 2D_comb``, ``2.5d_d_mrg -> 2_5D_avg``,
``2.5d_v_mrg -> 2_5D_comb``, ``3d_avg -> 3D_avg``, ``3d_v_mrg -> 3D_comb``, and
``2d/2.5d/3d -> 2D/2_5D/3D`` for the zone- and neighbourhood-based families. mirp's
extra intensity-volume points (``ivh_v25``, ``ivh_i50``, ...) have no IBSI table tag
and are left out, so that every key is one the IBSI reference tables define.

Intensities: CT images are passed as CT (mirp rounds them to whole HU, as IBSI 1
recommends after interpolation); every other image is passed without a modality-
specific step (mirp's PET class would silently clip negative values to zero). Images
with discretisation ``'none'`` are also passed as CT: mirp honours ``'none'`` for the
intensity-volume histogram only for CT, and their whole-number values are unchanged
by its rounding.

References
----------
.. [1] Zwanenburg A, Vallières M, Abdalah MA, et al. The Image Biomarker
   Standardization Initiative: standardized quantitative radiomics for high-throughput
   image-based phenotyping. Radiology 2020;295(2):328-338.
.. [2] Zwanenburg A, Leger S, Agolli L, et al. Assessing robustness of radiomic
   features by image perturbation. Sci Rep 2019;9:614 (mirp).
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.errors import GeometryError, InputError, MaskError
from core.imaging.validate import check_mask, check_same_grid, check_volume
from core.imaging.volume import DynamicVolume, Volume
from core.radiomics.settings import RadiomicsSettings

__all__ = ["extract", "RadiomicsFeatures", "ibsi_tag", "FAMILIES", "MIN_ROI_VOXELS"]

#: IBSI feature family prefixes, in the order of the IBSI 1 reference manual.
FAMILIES = ("morph", "loc", "stat", "ih", "ivh", "cm", "rlm", "szm", "dzm", "ngt", "ngl")
#: Fewest ROI voxels accepted (this work): one voxel has no shape, spread or texture.
MIN_ROI_VOXELS = 2

_AGG_MIRP = {"2D_avg": "2d_average", "2D_comb": "2d_slice_merge", "2_5D_avg": "2.5d_direction_merge",
             "2_5D_comb": "2.5d_volume_merge", "3D_avg": "3d_average", "3D_comb": "3d_volume_merge"}
_SUFFIX_IBSI = {"2d_avg": "2D_avg", "2d_s_mrg": "2D_comb", "2.5d_d_mrg": "2_5D_avg",
                "2.5d_v_mrg": "2_5D_comb", "3d_avg": "3D_avg", "3d_v_mrg": "3D_comb",
                "2d": "2D", "2.5d": "2_5D", "3d": "3D"}
_DISC_SUFFIX = re.compile(r"_(?:fbn_n\d+|fbs_w[0-9.eE+-]+|fbsp_w[0-9.eE+-]+)$")
_AGG_SUFFIX = re.compile(r"^(?P<base>.*?)(?:_d[0-9.]+)?(?:_a[0-9.]+)?_(?P<agg>2d_avg|2d_s_mrg|2\.5d_d_mrg|"
                         r"2\.5d_v_mrg|3d_avg|3d_v_mrg|2d|2\.5d|3d)$")
_IVH_TABLED = re.compile(r"^ivh_(v10|v90|i10|i90|diff_v10_v90|diff_i10_i90|auc)$")


class RadiomicsFeatures(dict):
    """IBSI tag -> value (float), plus why some values are missing.

    A plain ``dict[str, float]``; undefined features hold NaN and are explained in
    :attr:`missing` (tag -> reason). :attr:`settings` records how they were computed.
    """

    def __init__(self, values=(), *, missing=None, settings=None):
        super().__init__(values)
        self.missing: dict[str, str] = dict(missing or {})
        self.settings: RadiomicsSettings | None = settings


def ibsi_tag(column: str) -> str | None:
    """IBSI feature tag of a mirp 2.x feature column, or None for a non-feature column.

    Examples
    --------
    >>> ibsi_tag("cm_joint_max_d1_3d_v_mrg_fbn_n32")
    'cm_joint_max_3D_comb'
    >>> ibsi_tag("ngl_lde_d1_a0.0_2.5d_fbs_w0.25")
    'ngl_lde_2_5D'
    >>> ibsi_tag("image_voxel_size_x") is None
    True
    """
    if column.split("_", 1)[0] not in FAMILIES:
        return None
    name = _DISC_SUFFIX.sub("", column)
    m = _AGG_SUFFIX.match(name)
    if m and name.split("_", 1)[0] in ("cm", "rlm", "szm", "dzm", "ngt", "ngl"):
        return f"{m.group('base')}_{_SUFFIX_IBSI[m.group('agg')]}"
    if name.startswith("ivh_") and not _IVH_TABLED.match(name):
        return None
    return name


def _as_volume(x, what: str) -> Volume:
    if isinstance(x, (str, os.PathLike)):
        from core.imaging.io import load
        x = load(x)
    if not isinstance(x, Volume):
        raise InputError(f"the {what} is a {type(x).__name__}, not an image", fix=(
            f"Pass the {what} as a core.imaging Volume or the path of an image file."))
    if isinstance(x, DynamicVolume) or np.ndim(x.data) != 3:
        raise GeometryError(f"the {what} must be 3D; this one has shape {'x'.join(map(str, np.shape(x.data)))}",
                            path=x.source, fix=("Pick one frame or a static (summed) image of a dynamic "
                                                "series before radiomics."))
    return x


def _prepare(image, mask, settings: RadiomicsSettings) -> tuple[Volume, np.ndarray]:
    image = check_volume(_as_volume(image, "image"))
    mask = _as_volume(mask, "mask")
    check_same_grid(image, mask, ("image", "mask"))
    roi = np.asarray(check_mask(mask, image).data, dtype=bool)
    if settings.convert_to_suv:
        if not image.suv_available or image.units != "Bq/ml":
            reason = image.suv_unavailable_reason or f"the image is in {image.units}, not Bq/ml"
            raise InputError(f"SUV radiomics asked for, but SUV is unavailable: {reason}", path=image.source,
                             fix="Load the PET with its dose record (injected activity, weight, injection "
                                 "time), or use settings with convert_to_suv=False.")
        image = image.with_data(image.to_suv(), units="SUV")
    n_roi = int(roi.sum())
    if n_roi < MIN_ROI_VOXELS:
        raise MaskError(f"the mask holds {n_roi} voxel; radiomics needs at least {MIN_ROI_VOXELS}", path=mask.source,
                        fix="Draw the region again: a single voxel has no shape, spread or texture.")
    values = np.asarray(image.data, dtype=float)[roi]
    low, high = settings.resegment_range or (-math.inf, math.inf)
    if settings.fbs_lower_bound is not None:
        low = max(low, settings.fbs_lower_bound)
    kept = int(np.count_nonzero((values >= low) & (values <= high)))
    if kept == 0:
        raise MaskError(
            f"no ROI voxel lies in the intensity range [{low:g}, {high:g}] {image.units} kept by re-segmentation "
            f"(ROI intensities span {values.min():g} to {values.max():g})", path=image.source,
            fix="Widen resegment_range or lower bin_lower_bound, or check the image units (Bq/ml vs SUV).")
    if settings.discretisation[0] == "none" or settings.ivh_discretisation[0] == "none":
        if not (np.all(values == np.round(values)) and values.min() >= 1):
            raise InputError(
                f"discretisation 'none' needs positive whole-number grey levels; the ROI holds values from "
                f"{values.min():g} to {values.max():g}", path=image.source,
                fix="Use ('fbn', n_bins) or ('fbs', bin_width) discretisation for this image.")
    return image, roi


def _disc_kwargs(prefix: str, disc: tuple) -> dict:
    method = {"fbs": "fixed_bin_size", "fbn": "fixed_bin_number", "none": "none"}[disc[0]]
    out = {f"{prefix}_discretisation_method": method}
    if disc[0] == "fbn":
        out[f"{prefix}_discretisation_n_bins"] = disc[1]
    elif disc[0] == "fbs":
        out[f"{prefix}_discretisation_bin_width"] = disc[1]
    return out


def _mirp_kwargs(settings: RadiomicsSettings, modality: str) -> dict:
    by_slice = settings.dimensionality == "2d"
    matrix = [_AGG_MIRP[a] for a in settings.aggregations]
    zone = sorted({{"2D": "2d", "2_5D": "2.5d", "3D": "3d"}[a.rsplit("_", 1)[0]] for a in settings.aggregations})
    # mirp honours 'none' for the IVH only for CT (other classes switch to FBN 1000); 'none' requires
    # whole-number grey levels (checked in _prepare), on which mirp's CT rounding changes nothing.
    as_ct = modality == "CT" or "none" in (settings.discretisation[0], settings.ivh_discretisation[0])
    kw = dict(image_modality="ct" if as_ct else "mr", by_slice=by_slice,
              base_feature_families="all", ibsi_compliant=True,
              glcm_distance=1.0, ngldm_distance=1.0, ngldm_difference_level=0.0,
              glcm_spatial_method=matrix, glrlm_spatial_method=matrix, glszm_spatial_method=zone,
              gldzm_spatial_method=zone, ngtdm_spatial_method=zone, ngldm_spatial_method=zone)
    kw |= _disc_kwargs("base", settings.discretisation) | _disc_kwargs("ivh", settings.ivh_discretisation)
    if settings.resample_mm is not None:  # mirp orders axes (z, y, x) = (k, j, i)
        kw |= dict(new_spacing=list(settings.resample_mm[::-1]), spline_order=
                   {"nearest": 0, "linear": 1, "cubic": 3}[settings.interpolation], anti_aliasing=False,
                   roi_spline_order=1, roi_interpolation_mask_inclusion_threshold=settings.mask_threshold)
    low, high = settings.resegment_range or (None, None)
    if settings.fbs_lower_bound is not None:
        low = settings.fbs_lower_bound if low is None else max(low, settings.fbs_lower_bound)
    if low is not None:
        kw["resegmentation_intensity_range"] = [low, np.nan if high is None or math.isinf(high) else high]
    if settings.outlier_sigma is not None:
        kw["resegmentation_sigma"] = settings.outlier_sigma
    return kw


@contextmanager
def _quiet_mirp():
    """mirp calls logging.basicConfig(INFO, stdout) and logs each case: keep the app's logging untouched."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)  # makes mirp's basicConfig a no-op
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*do not represent calibrated values.*")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"mirp\..*")
            yield
    finally:
        logging.disable(previous)
        if guard is not None:
            root.removeHandler(guard)


def _run_mirp(image: Volume, roi: np.ndarray, kwargs: dict) -> dict[str, float]:
    import mirp
    import nibabel as nib

    with tempfile.TemporaryDirectory(prefix="tb_radiomics_") as tmp:
        img_path, roi_path = Path(tmp, "image.nii.gz"), Path(tmp, "mask.nii.gz")
        affine = np.asarray(image.affine, dtype=float)
        nib.save(nib.Nifti1Image(np.asarray(image.data, dtype=np.float64), affine), img_path)
        nib.save(nib.Nifti1Image(roi.astype(np.uint8), affine), roi_path)
        with _quiet_mirp():
            tables = mirp.extract_features(image=str(img_path), mask=str(roi_path), export_features=True,
                                           write_features=False, **kwargs)
    if not tables:
        raise MaskError("the feature library found no region in the mask", path=image.source,
                        fix="Check that the mask marks the region with 1 on the image grid.")
    row = tables[0].iloc[0]
    return {col: row[col] for col in tables[0].columns}


def _missing_reason(tag: str, values: np.ndarray) -> str:
    if np.unique(values).size == 1:
        return "undefined: every ROI voxel has the same intensity (a single grey level)"
    if tag.startswith("morph_"):
        return "undefined for this ROI shape (too few voxels or a flat region)"
    return "undefined for this ROI (the IBSI definition divides by zero here)"


def extract(image, mask, settings: RadiomicsSettings | None = None) -> RadiomicsFeatures:
    """IBSI 1 features of the region ``mask`` in ``image``.

    Parameters
    ----------
    image : Volume or str or PathLike
        3D image (or a file read with :func:`core.imaging.io.load`); intensities in its
        units (HU, Bq/ml, SUV with ``settings.convert_to_suv``).
    mask : Volume or str or PathLike
        0/1 mask on the same grid (shape and affine within 1e-3 mm).
    settings : RadiomicsSettings, default=RadiomicsSettings()
        Processing and discretisation, see :class:`RadiomicsSettings`.

    Returns
    -------
    RadiomicsFeatures
        ``dict[str, float]`` keyed by IBSI tag (families :data:`FAMILIES`; texture tags
        carry the aggregation suffix, e.g. ``cm_contrast_3D_comb``, ``szm_sze_3D``).
        Morphological values in mm, mm\\ :sup:`2`, mm\\ :sup:`3`. Undefined values are
        NaN, with the reason in ``.missing`` (and a ``RuntimeWarning``).

    Raises
    ------
    GeometryError
        4D image or mask, or image and mask on different grids.
    InvalidVoxelError
        NaN or infinite image voxels.
    MaskError
        Empty or non-binary mask, fewer than :data:`MIN_ROI_VOXELS` voxels, or no ROI
        voxel left after re-segmentation.
    InputError
        SUV asked for but unavailable; discretisation ``'none'`` on non-integer values.

    Notes
    -----
    IBSI discretisation, e.g. fixed bin number :math:`X_d = \\lfloor N_g (X - X_{min}) /
    (X_{max} - X_{min}) \\rfloor + 1`; see :mod:`core.radiomics.settings`.

    References
    ----------
    .. [1] Zwanenburg A, et al. Radiology 2020;295(2):328-338 (IBSI 1).

    Examples
    --------
    >>> import numpy as np
    >>> from core.imaging.volume import Volume
    >>> img = Volume(np.arange(64, dtype=float).reshape(4, 4, 4) % 7 + 1, np.eye(4))
    >>> roi = Volume(np.ones((4, 4, 4), np.uint8), np.eye(4), "SEG", "label")
    >>> f = extract(img, roi, RadiomicsSettings(discretisation=("fbn", 8)))   # doctest: +SKIP
    >>> f["morph_volume"] > 0                                                 # doctest: +SKIP
    True
    """
    settings = RadiomicsSettings() if settings is None else settings
    image, roi = _prepare(image, mask, settings)
    raw = _run_mirp(image, roi, _mirp_kwargs(settings, image.modality))
    values, missing = {}, {}
    roi_values = np.asarray(image.data, dtype=float)[roi]
    for column, value in raw.items():
        tag = ibsi_tag(column)
        if tag is None:
            continue
        value = float(value) if value is not None else math.nan
        values[tag] = value
        if not math.isfinite(value):
            values[tag] = math.nan
            missing[tag] = _missing_reason(tag, roi_values)
    if missing:
        warnings.warn(f"{len(missing)} radiomics feature(s) are undefined for this ROI and reported as NaN "
                      f"(e.g. {next(iter(missing))}: {next(iter(missing.values()))}); see .missing",
                      RuntimeWarning, stacklevel=2)
    return RadiomicsFeatures(values, missing=missing, settings=settings)
