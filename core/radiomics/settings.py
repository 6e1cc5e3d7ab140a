r"""Settings of an IBSI radiomics extraction: :class:`RadiomicsSettings`.

One frozen record holds every choice the Image Biomarker Standardisation Initiative
(IBSI 1) asks a study to report: dimensionality, resampling, mask partial-volume
threshold, re-segmentation, discretisation and the texture-matrix aggregation
(Zwanenburg et al. 2020, section 2 "Image processing" and the reporting guidelines).
Values are checked once, here; :func:`core.radiomics.extract` trusts them.

Discretisation (IBSI 1, section 2.7), with intensities :math:`X`, ROI minimum and
maximum :math:`X_{min}, X_{max}` and lower bound :math:`X_{gl,min}`:

.. math::

    \text{FBN: } X_d = \left\lfloor N_g \frac{X - X_{min}}{X_{max} - X_{min}} \right\rfloor + 1
    \quad (X_d = N_g \text{ at } X = X_{max}), \qquad
    \text{FBS: } X_d = \left\lfloor \frac{X - X_{gl,min}}{w_b} \right\rfloor + 1 .

With FBS, IBSI takes :math:`X_{gl,min}` from the lower bound of the re-segmentation
range, so ``bin_lower_bound`` is applied as that lower bound: ROI voxels below it are
left out of the intensity mask.

Presets
-------
* :meth:`RadiomicsSettings.ibsi_phantom`: the IBSI 1 digital phantom as its reference
  values were computed. The phantom is not one of the CT configurations A-E: it is
  used as is, without resampling or re-segmentation, its grey levels 1-6 serving as
  the discretised values ("Discretisation is not required", IBSI 1 reference manual,
  chapter "Reference data sets", digital phantom). All six texture aggregations are
  computed so that every tabled value can be compared.
* :meth:`RadiomicsSettings.pet_suv`: PET in body-weight SUV, 3D, fixed bin size.
  A fixed bin width in SUV keeps grey levels comparable between and within patients
  (Leijenaar et al. 2015); the width 0.25 SUV is one used for high-uptake PET by
  Pfaehler et al. 2019, lower bound 0 SUV (both this work's choice, not a guideline
  value).

References
----------
.. [1] Zwanenburg A, Vallières M, Abdalah MA, et al. The Image Biomarker
   Standardization Initiative: standardized quantitative radiomics for high-throughput
   image-based phenotyping. Radiology 2020;295(2):328-338.
.. [2] Leijenaar RTH, Nalbantov G, Carvalho S, et al. The effect of SUV discretization
   in quantitative FDG-PET radiomics: the need for standardized methodology in tumor
   texture analysis. Sci Rep 2015;5:11075.
.. [3] Pfaehler E, Beukinga RJ, de Jong JR, et al. Repeatability of 18F-FDG PET
   radiomic features: a phantom study to explore sensitivity to image reconstruction
   settings, noise, and delineation method. Med Phys 2019;46(2):665-678.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InputError

__all__ = ["RadiomicsSettings", "AGGREGATIONS", "INTERPOLATIONS", "DIMENSIONALITIES"]

#: IBSI texture aggregation suffixes (IBSI 1, section 3.6 "Texture matrix aggregation").
AGGREGATIONS = ("2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb", "3D_avg", "3D_comb")
#: Interpolation name -> spline order.
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}
DIMENSIONALITIES = ("2d", "3d")
_DEFAULT_AGGREGATIONS = {"2d": ("2D_avg", "2D_comb"), "3d": ("3D_avg", "3D_comb")}
_METHODS = ("fbs", "fbn", "none")


def _bad(name: str, value, expected: str, fix: str) -> InputError:
    return InputError(f"radiomics setting {name}={value!r} is invalid: {expected}", fix=fix)


def _check_discretisation(name: str, disc) -> tuple:
    if isinstance(disc, str):
        disc = (disc,)
    disc = tuple(disc) if isinstance(disc, (tuple, list)) else (disc,)
    fix = f"Give {name} as ('fbs', bin_width), ('fbn', n_bins) or ('none',)."
    if not disc or disc[0] not in _METHODS:
        raise _bad(name, disc, "the method must be 'fbs', 'fbn' or 'none'", fix)
    method = disc[0]
    if method == "none":
        if len(disc) != 1:
            raise _bad(name, disc, "'none' takes no parameter", fix)
        return ("none",)
    if len(disc) != 2:
        raise _bad(name, disc, f"'{method}' needs exactly one parameter", fix)
    value = disc[1]
    if method == "fbn":
        if isinstance(value, bool) or not float(value).is_integer() or value < 2:
            raise _bad(name, disc, "the number of bins must be an integer of at least 2", fix)
        return ("fbn", int(value))
    if isinstance(value, bool) or not (math.isfinite(float(value)) and value > 0):
        raise _bad(name, disc, "the bin width must be a positive finite number (image units)", fix)
    return ("fbs", float(value))


@dataclass(frozen=True)
class RadiomicsSettings:
    """How to extract IBSI features; immutable and validated on creation.

    Parameters
    ----------
    dimensionality : {"3d", "2d"}, default="3d"
        ``"3d"``: resampling and neighbourhoods in 3D. ``"2d"``: in-plane only (slices
        are the planes of constant voxel index k); only 2D/2.5D aggregations allowed.
    resample_mm : float or tuple of float or None, default=None
        New voxel size in mm along (i, j, k) for ``"3d"`` or (i, j) for ``"2d"``; one
        number means isotropic. None keeps the native grid.
    interpolation : {"nearest", "linear", "cubic"}, default="linear"
        Image interpolation when resampling (spline order 0, 1, 3).
    mask_threshold : float, default=0.5
        A resampled (linearly interpolated) mask voxel belongs to the ROI when its
        value is at least this, in (0, 1] (IBSI 1 recommends 0.5).
    resegment_range : (float, float) or None, default=None
        Intensity range (image units) kept in the intensity mask; the upper bound may
        be ``math.inf``.
    outlier_sigma : float or None, default=None
        Outlier re-segmentation: drop voxels outside mean +- ``outlier_sigma`` SD.
    discretisation : tuple, default=("fbn", 32)
        ``("fbs", bin_width)`` in image units, ``("fbn", n_bins)``, or ``("none",)``
        for images that already hold positive integer grey levels. The default
        32 bins is this work's choice.
    bin_lower_bound : float or None, default=None
        Lower bound :math:`X_{gl,min}` of the first FBS bin (image units); required for
        FBS unless ``resegment_range`` gives it, and then it must agree.
    ivh_discretisation : tuple, default=("fbn", 1000)
        Discretisation for the intensity-volume histogram, same forms as
        ``discretisation`` (1000 bins: this work's choice, mirp's default for
        uncalibrated images; :meth:`pet_suv` uses FBS 0.1 SUV, mirp's PET default).
    aggregations : tuple of str or None, default=None
        Texture aggregations among :data:`AGGREGATIONS`; None gives ``("3D_avg",
        "3D_comb")`` in 3D and ``("2D_avg", "2D_comb")`` in 2D.
    convert_to_suv : bool, default=False
        Convert a PET image in Bq/ml to body-weight SUV before extraction.

    Raises
    ------
    InputError
        For any value outside the ranges above; the message quotes it and says what to give.

    References
    ----------
    .. [1] Zwanenburg A, et al. Radiology 2020;295(2):328-338 (IBSI 1).

    Examples
    --------
    >>> s = RadiomicsSettings(resample_mm=2.0, discretisation=("fbn", 16))
    >>> s.resample_mm, s.texture_aggregations
    ((2.0, 2.0, 2.0), ('3D_avg', '3D_comb'))
    """

    dimensionality: str = "3d"
    resample_mm: float | tuple[float, ...] | None = None
    interpolation: str = "linear"
    mask_threshold: float = 0.5
    resegment_range: tuple[float, float] | None = None
    outlier_sigma: float | None = None
    discretisation: tuple = ("fbn", 32)
    bin_lower_bound: float | None = None
    ivh_discretisation: tuple = ("fbn", 1000)
    aggregations: tuple[str, ...] | None = None
    convert_to_suv: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        if self.dimensionality not in DIMENSIONALITIES:
            raise _bad("dimensionality", self.dimensionality, "must be '2d' or '3d'",
                       "Use dimensionality='3d' (volumetric) or '2d' (slice by slice).")
        n_axes = 3 if self.dimensionality == "3d" else 2
        if self.resample_mm is not None:
            spacing = self.resample_mm
            spacing = (spacing,) * n_axes if isinstance(spacing, (int, float)) else tuple(spacing)
            if len(spacing) != n_axes or not all(
                    not isinstance(s, bool) and math.isfinite(float(s)) and s > 0 for s in spacing):
                raise _bad("resample_mm", self.resample_mm,
                           f"needs {n_axes} positive voxel sizes in mm for dimensionality "
                           f"'{self.dimensionality}'",
                           "Give one number (isotropic) or one size per axis (i, j, k in 3D; i, j in 2D), "
                           "or None to keep the native grid.")
            set_(self, "resample_mm", tuple(float(s) for s in spacing))
        if self.interpolation not in INTERPOLATIONS:
            raise _bad("interpolation", self.interpolation, "must be 'nearest', 'linear' or 'cubic'",
                       "IBSI 1 configurations use 'linear' (or 'cubic') for images.")
        if not (0.0 < float(self.mask_threshold) <= 1.0):
            raise _bad("mask_threshold", self.mask_threshold, "must lie in (0, 1]",
                       "Use 0.5, the IBSI 1 partial-volume threshold for resampled masks.")
        if self.resegment_range is not None:
            rng = tuple(float(v) for v in self.resegment_range)
            if len(rng) != 2 or math.isnan(rng[0]) or math.isnan(rng[1]) or not rng[0] < rng[1] \
                    or math.isinf(rng[0]):
                raise _bad("resegment_range", self.resegment_range,
                           "needs (low, high) with a finite low < high",
                           "For example resegment_range=(0.0, math.inf) keeps non-negative values.")
            set_(self, "resegment_range", rng)
        if self.outlier_sigma is not None and not (math.isfinite(self.outlier_sigma) and self.outlier_sigma > 0):
            raise _bad("outlier_sigma", self.outlier_sigma, "must be a positive number of standard deviations",
                       "For example 3.0 (mean +- 3 SD), or None to skip outlier re-segmentation.")
        disc = _check_discretisation("discretisation", self.discretisation)
        set_(self, "discretisation", disc)
        set_(self, "ivh_discretisation", _check_discretisation("ivh_discretisation", self.ivh_discretisation))
        if self.bin_lower_bound is not None and not math.isfinite(self.bin_lower_bound):
            raise _bad("bin_lower_bound", self.bin_lower_bound, "must be a finite number",
                       "Give the lower edge of the first bin in image units.")
        if "fbs" in (disc[0], self.ivh_discretisation[0]):
            low = self.resegment_range[0] if self.resegment_range is not None else None
            if self.bin_lower_bound is None and low is None:
                raise _bad("bin_lower_bound", None, "fixed bin size discretisation needs the lower edge of "
                           "the first bin", "Give bin_lower_bound (for example 0.0 for SUV) or a "
                           "resegment_range whose low end is that edge (IBSI 1, section 2.7).")
            if self.bin_lower_bound is not None and low is not None and self.bin_lower_bound != low:
                raise _bad("bin_lower_bound", self.bin_lower_bound,
                           f"differs from the low end of resegment_range ({low:g}); IBSI takes the first "
                           "FBS bin edge from that range", "Leave bin_lower_bound unset or make both equal.")
        aggs = self.aggregations
        aggs = _DEFAULT_AGGREGATIONS[self.dimensionality] if aggs is None else (
            (aggs,) if isinstance(aggs, str) else tuple(aggs))
        bad = [a for a in aggs if a not in AGGREGATIONS]
        if bad or not aggs or len(set(aggs)) != len(aggs):
            raise _bad("aggregations", self.aggregations, f"each must be one of {', '.join(AGGREGATIONS)}, "
                       "listed once", "Leave aggregations=None for the default of the dimensionality.")
        if self.dimensionality == "2d" and any(a.startswith("3D") for a in aggs):
            raise _bad("aggregations", aggs, "3D aggregations need dimensionality='3d'",
                       "Use '2D_avg', '2D_comb', '2_5D_avg' or '2_5D_comb' in 2D.")
        set_(self, "aggregations", aggs)

    @property
    def texture_aggregations(self) -> tuple[str, ...]:
        """The IBSI aggregation suffixes that texture features will carry."""
        return self.aggregations

    @property
    def fbs_lower_bound(self) -> float | None:
        """Lower edge of the first FBS bin (image units), or None without FBS."""
        if "fbs" not in (self.discretisation[0], self.ivh_discretisation[0]):
            return None
        return self.bin_lower_bound if self.bin_lower_bound is not None else self.resegment_range[0]

    @classmethod
    def ibsi_phantom(cls) -> "RadiomicsSettings":
        """The IBSI 1 digital phantom: native grid, 3D, grey levels used as they are.

        No resampling or re-segmentation; discretisation ``("none",)``, which on the
        phantom's grey levels 1-6 equals FBS width 1 from 1 or FBN with 6 bins (IBSI 1
        reference manual, digital phantom); every texture aggregation.

        Examples
        --------
        >>> RadiomicsSettings.ibsi_phantom().discretisation
        ('none',)
        """
        return cls(dimensionality="3d", resample_mm=None, discretisation=("none",),
                   ivh_discretisation=("none",), aggregations=AGGREGATIONS)

    @classmethod
    def pet_suv(cls, bin_width_suv: float = 0.25, resample_mm=None) -> "RadiomicsSettings":
        """PET in body-weight SUV, 3D, fixed bin size from 0 SUV.

        Parameters
        ----------
        bin_width_suv : float, default=0.25
            FBS width in SUV (Pfaehler et al. 2019; this work's choice).
        resample_mm : float or tuple or None, default=None
            Optional isotropic (or per-axis) resampling, mm.

        References
        ----------
        .. [1] Leijenaar RTH, et al. Sci Rep 2015;5:11075 (fixed bin size for SUV).
        .. [2] Pfaehler E, et al. Med Phys 2019;46(2):665-678 (width 0.25 SUV).

        Examples
        --------
        >>> RadiomicsSettings.pet_suv().discretisation
        ('fbs', 0.25)
        """
        return cls(dimensionality="3d", resample_mm=resample_mm, interpolation="linear",
                   discretisation=("fbs", bin_width_suv), bin_lower_bound=0.0,
                   ivh_discretisation=("fbs", 0.1), convert_to_suv=True)
