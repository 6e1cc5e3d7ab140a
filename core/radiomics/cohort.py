r"""Static and "dynamic" radiomics of a dynamic PET tumour, and a cohort feature table.

Method
------
:func:`case_features` computes IBSI 1 features (:func:`core.radiomics.features.extract`,
i.e. mirp) of one tumour in three images on the PET grid:

* ``static_``: the static SUV image, the duration-weighted mean of the frames lying in the
  protocol's static window (:func:`core.kinetics.parameters.window_mean`; 10-30 min p.i.
  for [18F]FDOPA) times the body-weight SUV factor, with
  :meth:`RadiomicsSettings.pet_suv` (fixed bin size 0.25 SUV from 0 SUV) by default;
* ``ttp_`` and ``slope_`` ("dynamic radiomics"): the voxel-wise time-to-peak (min) and
  late-slope (SUV/h) maps of :func:`core.kinetics.parameters.parametric_maps` inside the
  tumour, with the same feature families.

Texture features of parametric maps follow the idea of "dynamic radiomics" of amino-acid
PET (texture of voxel-wise kinetic maps); the discretisation below is this work's choice,
not a published value:

* time to peak: fixed bin size :data:`TTP_BIN_MIN` = 1 min from 0 min (frame mid-times
  are the only values a TTP can take; 1 min keeps the early short frames apart while the
  5-min frames fall in their own bins), intensity-volume histogram 0.25 min (this work);
* slope: fixed bin size :data:`SLOPE_BIN_SUV_PER_H` = 0.5 SUV/h, intensity-volume
  histogram 0.1 SUV/h (this work). Slopes are negative as often as positive, so the lower
  edge of the first bin is the ROI minimum rounded down to a multiple of the bin width:
  bin edges are then the same slope values in every patient (only the first occupied
  bin number moves), without a fixed floor that would cut off steep wash-out (this work).

Processing other than discretisation (resampling, aggregation, outlier filter) is taken
from ``settings``; voxels outside the tumour (NaN in the maps) are filled with the ROI
median before extraction, so that a resampling option blends no NaN into edge voxels;
without resampling they are never read (this work).

Morphological features (``*_morph_*``) depend on the mask only, except Moran's I and
Geary's C (``morph_moran_i``, ``morph_geary_c``), which use the intensities; their cost
grows with the square of the ROI voxel count up to mirp's sampling threshold, and
:func:`~core.radiomics.features.extract` has no switch to skip them (timed in
``benchmarks/radiomics.py``).

:func:`cohort_feature_table` generates synthetic patients in memory
(:func:`core.phantoms.brain_fdopa.generate_patient`) and returns one row per patient,
optionally over worker processes (each generates and extracts its own patients).

References
----------
.. [1] Zwanenburg A, Vallières M, Abdalah MA, et al. The Image Biomarker
   Standardization Initiative: standardized quantitative radiomics for high-throughput
   image-based phenotyping. Radiology 2020;295(2):328-338.
.. [2] Leijenaar RTH, Nalbantov G, Carvalho S, et al. The effect of SUV discretization
   in quantitative FDG-PET radiomics: the need for standardized methodology in tumor
   texture analysis. Sci Rep 2015;5:11075.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import resource
import time
from typing import Callable

import numpy as np

from core.errors import InputError
from core.imaging.validate import check_mask
from core.imaging.volume import DynamicVolume, Volume
from core.kinetics.parameters import _as_dynamic, parametric_maps, protocol_for, window_mean
from core.radiomics.features import RadiomicsFeatures, extract
from core.radiomics.settings import RadiomicsSettings

__all__ = ["case_features", "cohort_feature_table", "static_suv_image", "PREFIXES", "TTP_BIN_MIN",
           "SLOPE_BIN_SUV_PER_H", "ID_COLUMNS"]

#: Feature-name prefixes of the three images.
PREFIXES = ("static_", "ttp_", "slope_")
#: Fixed bin width of the time-to-peak map, min (this work).
TTP_BIN_MIN = 1.0
#: Fixed bin width of the slope map, SUV/h (this work).
SLOPE_BIN_SUV_PER_H = 0.5
_TTP_IVH_BIN_MIN = 0.25
_SLOPE_IVH_BIN_SUV_PER_H = 0.1
#: Leading columns of :func:`cohort_feature_table`.
ID_COLUMNS = ("patient_id", "site", "label", "idh")


def static_suv_image(pet: DynamicVolume, protocol="FDOPA") -> Volume:
    r"""The static image of the protocol's window, in body-weight SUV.

    .. math::

        \mathrm{SUV}(x) = f_{SUV} \frac{\sum_{f \in W} \Delta t_f\, C_f(x)}{\sum_{f \in W} \Delta t_f}

    Parameters
    ----------
    pet : DynamicVolume
        Bq/ml with a complete dose record.
    protocol : TracerProtocol or str, default="FDOPA"
        Gives the static window (min p.i.).

    Returns
    -------
    Volume
        3D, units ``"SUV"``, on the PET grid.

    Raises
    ------
    TimingError
        Not a dynamic PET, or no frame in the static window.
    InputError
        SUV unavailable (no complete dose record or not Bq/ml).

    Examples
    --------
    >>> from core.phantoms.brain_fdopa import generate_patient     # doctest: +SKIP
    >>> static_suv_image(generate_patient(0).pet).units            # doctest: +SKIP
    'SUV'
    """
    pet = _as_dynamic(pet)
    protocol = protocol_for(protocol)
    if not pet.suv_available or pet.units != "Bq/ml":
        reason = pet.suv_unavailable_reason or f"the image is in {pet.units}, not Bq/ml"
        raise InputError(f"radiomics of the static image needs SUV, which is unavailable: {reason}",
                         path=pet.source, fix="Load the PET with its dose record (injected activity, body "
                                              "weight, injection time).")
    static = window_mean(pet.data, pet.frame_start_min, pet.frame_end_min, protocol.static_window_min,
                         name="static") * pet.suv_factor
    return Volume(np.asarray(static, dtype=np.float64), np.asarray(pet.affine, float).copy(), "PT", "SUV",
                  source=pet.source, meta={"parameter": f"static mean {protocol.static_window_min} min"})


def _map_settings(base: RadiomicsSettings, bin_width: float, ivh_width: float, lower: float) -> RadiomicsSettings:
    return dataclasses.replace(base, discretisation=("fbs", bin_width), ivh_discretisation=("fbs", ivh_width),
                               bin_lower_bound=lower, resegment_range=None, convert_to_suv=False)


def _filled(map_: Volume, roi: np.ndarray) -> Volume:
    data = np.asarray(map_.data, dtype=np.float64).copy()
    data[~roi] = float(np.median(data[roi]))
    return map_.with_data(data)


def _prefixed(prefix: str, features: dict) -> RadiomicsFeatures:
    missing = {prefix + k: why for k, why in getattr(features, "missing", {}).items()}
    return RadiomicsFeatures({prefix + k: float(v) for k, v in features.items()}, missing=missing)


def _merge(a: RadiomicsFeatures, b: RadiomicsFeatures) -> RadiomicsFeatures:
    return RadiomicsFeatures({**a, **b}, missing={**a.missing, **b.missing})


def _case_features_timed(pet, tumour, settings, dynamic, protocol) -> tuple[RadiomicsFeatures, dict[str, float]]:
    settings = RadiomicsSettings.pet_suv() if settings is None else settings
    static_settings = dataclasses.replace(settings, convert_to_suv=False)
    pet = _as_dynamic(pet)
    t0 = time.perf_counter()
    static = static_suv_image(pet, protocol)
    out = _prefixed("static_", extract(static, tumour, static_settings))
    timing = {"static_s": time.perf_counter() - t0, "dynamic_s": 0.0}
    if dynamic:
        t0 = time.perf_counter()
        roi = np.asarray(check_mask(tumour, pet).data, bool)
        maps = parametric_maps(pet, tumour, 1.0, protocol)  # background only scales the TBR map (unused)
        ttp = _filled(maps["ttp_min"], roi)
        out = _merge(out, _prefixed("ttp_", extract(ttp, tumour, _map_settings(settings, TTP_BIN_MIN,
                                                                              _TTP_IVH_BIN_MIN, 0.0))))
        slope = _filled(maps["slope_per_h"], roi)
        low = math.floor(float(np.min(slope.data[roi])) / SLOPE_BIN_SUV_PER_H) * SLOPE_BIN_SUV_PER_H
        out = _merge(out, _prefixed("slope_", extract(slope, tumour, _map_settings(
            settings, SLOPE_BIN_SUV_PER_H, _SLOPE_IVH_BIN_SUV_PER_H, low))))
        timing["dynamic_s"] = time.perf_counter() - t0
    return out, timing


def case_features(pet: DynamicVolume, tumour: Volume, *, settings: RadiomicsSettings | None = None,
                  dynamic: bool = True, protocol="FDOPA") -> RadiomicsFeatures:
    r"""IBSI features of a tumour in the static SUV image and, optionally, its TTP and slope maps.

    Parameters
    ----------
    pet : DynamicVolume
        Dynamic PET in Bq/ml with a complete dose record.
    tumour : Volume
        0/1 tumour mask on the PET grid (at least 2 voxels).
    settings : RadiomicsSettings, default=RadiomicsSettings.pet_suv()
        Processing and discretisation of the static SUV image. The parametric maps take
        its resampling and aggregations with their own fixed bin sizes
        (:data:`TTP_BIN_MIN` min, :data:`SLOPE_BIN_SUV_PER_H` SUV/h; this work).
    dynamic : bool, default=True
        Also compute the ``ttp_`` and ``slope_`` features.
    protocol : TracerProtocol or str, default="FDOPA"
        Static and slope windows (:func:`core.kinetics.parameters.protocol_for`).

    Returns
    -------
    RadiomicsFeatures
        A ``dict[str, float]``: ``static_<IBSI tag>`` (SUV, mm for morphology), and with
        ``dynamic`` ``ttp_<tag>`` (min) and ``slope_<tag>`` (SUV/h). Undefined values are
        NaN, with the reason in ``.missing``.

    Raises
    ------
    MaskError
        Empty, non-binary, off-grid or one-voxel tumour mask.
    TimingError
        Not a dynamic PET, or no frame in a window.
    InputError
        SUV unavailable.

    Notes
    -----
    FBS discretisation (IBSI 1, section 2.7) of the maps,
    :math:`X_d = \lfloor (X - X_{gl,min}) / w_b \rfloor + 1`, with
    :math:`X_{gl,min} = 0` min for TTP and
    :math:`X_{gl,min} = w_b \lfloor \min_{ROI} X / w_b \rfloor` for the slope (this work).

    References
    ----------
    .. [1] Zwanenburg A, et al. Radiology 2020;295(2):328-338 (IBSI 1).

    Examples
    --------
    >>> from core.phantoms.brain_fdopa import generate_patient        # doctest: +SKIP
    >>> case = generate_patient(0)                                    # doctest: +SKIP
    >>> f = case_features(case.pet, case.tumour_mask)                 # doctest: +SKIP
    >>> round(f["static_stat_mean"], 2), "ttp_stat_mean" in f         # doctest: +SKIP
    (1.86, True)
    """
    return _case_features_timed(pet, tumour, settings, dynamic, protocol)[0]


def _patient_row(index: int, seed: int, site: str, settings, dynamic: bool, protocol) -> tuple[dict, dict]:
    from core.phantoms.brain_fdopa import generate_patient

    t0 = time.perf_counter()
    case = generate_patient(index, seed, site, anatomy=_WORKER_ANATOMY)
    gen_s = time.perf_counter() - t0
    feats, timing = _case_features_timed(case.pet, case.tumour_mask, settings, dynamic, protocol)
    row = {"patient_id": case.patient_id, "site": case.site, "label": case.label, "idh": case.idh} | feats
    timing = {"patient_id": case.patient_id, "generation_s": gen_s} | timing | {
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "pid": os.getpid()}
    return row, timing


_WORKER_ANATOMY = None


def _init_worker(anatomy) -> None:
    global _WORKER_ANATOMY
    _WORKER_ANATOMY = anatomy


def cohort_feature_table(n: int, *, seed: int = 0, sites=("A", "B", "C"), workers: int | None = None,
                         progress: Callable[[float, str], None] | None = None,
                         settings: RadiomicsSettings | None = None, dynamic: bool = True,
                         protocol="FDOPA"):
    """Features of ``n`` synthetic patients, generated in memory, one row per patient.

    Patient ``i`` is ``generate_patient(i, seed, sites[i % len(sites)])``.

    Parameters
    ----------
    n : int
        Number of patients (>= 1).
    seed : int, default=0
        Cohort seed of :func:`core.phantoms.brain_fdopa.generate_patient`.
    sites : sequence of {"A", "B", "C"}, default=("A", "B", "C")
        Sites assigned in turn.
    workers : int, optional
        Worker processes (spawned; each generates and extracts its own patients). Default
        ``min(2, os.cpu_count())``; 1 (in this process) when ``n == 1``.
    progress : callable(fraction, message), optional
        Called after each patient with the fraction done and e.g. ``"DEMO-B-001 (2/6)"``.
    settings, dynamic, protocol
        As in :func:`case_features`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ID_COLUMNS` then the features, rows in patient order. ``attrs
        ["timings"]`` holds one dict per patient: ``generation_s``, ``static_s``,
        ``dynamic_s`` (seconds), ``max_rss_mb`` (peak resident memory of the process that
        made it, MiB) and ``pid``.

    Raises
    ------
    InputError
        ``n`` < 1, no site, or ``workers`` < 1.

    Examples
    --------
    >>> df = cohort_feature_table(2, workers=1)                      # doctest: +SKIP
    >>> list(df.columns[:4])                                         # doctest: +SKIP
    ['patient_id', 'site', 'label', 'idh']
    """
    import pandas as pd

    from core.phantoms.anatomy import load_anatomy

    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"the cohort needs at least one patient, got n={n!r}", fix="Pass n >= 1.")
    sites = (sites,) if isinstance(sites, str) else tuple(sites)
    if not sites:
        raise InputError("no site given", fix="Pass sites such as ('A', 'B', 'C').")
    n = int(n)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if int(workers) != workers or workers < 1:
        raise InputError(f"workers must be a whole number >= 1, got {workers!r}", fix="Pass workers=1 or more.")
    workers = max(1, min(int(workers), n))
    anatomy = load_anatomy()
    jobs = [(i, int(seed), sites[i % len(sites)], settings, dynamic, protocol) for i in range(n)]
    results: dict[int, tuple[dict, dict]] = {}

    def report(i: int) -> None:
        if progress:
            progress(len(results) / n, f"{results[i][0]['patient_id']} ({len(results)}/{n})")

    if workers == 1:
        previous = _WORKER_ANATOMY
        _init_worker(anatomy)
        try:
            for i, job in enumerate(jobs):
                results[i] = _patient_row(*job)
                report(i)
        finally:
            _init_worker(previous)
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                                    initializer=_init_worker, initargs=(anatomy,)) as pool:
            futures = {pool.submit(_patient_row, *job): i for i, job in enumerate(jobs)}
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                report(i)
    df = pd.DataFrame([results[i][0] for i in range(n)])
    df.attrs["timings"] = [results[i][1] for i in range(n)]
    return df
