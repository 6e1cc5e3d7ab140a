"""Benchmark: IBSI radiomics of demo patients (core.radiomics.cohort.cohort_feature_table).

Measured in one run, on the same ``--n`` synthetic patients (seed 0, sites A, B, C in turn):

1. serial: ``cohort_feature_table(n, workers=1)`` in this process;
2. parallel: ``cohort_feature_table(n, workers=os.cpu_count())`` (``--workers`` to change),
   each spawned worker generating and extracting its own patients.

For each it prints the wall time, patients per second, feature values per second, the
mean time per patient of phantom generation, static-SUV features and dynamic (TTP +
slope map) features, and the memory peak (largest ``ru_maxrss`` of the process(es) that
made the patients). The two tables must agree value for value (checked).

Then the cost of the morphology family against ROI size (``--no-roi-scaling`` skips it):
mirp's Moran's I and Geary's C are pairwise over ROI voxels, and
:func:`core.radiomics.extract` cannot skip them, so the static extraction is timed on the
tumour of patient 0 dilated 0, 1, 2, 4 times, with and without mirp's morphology family.

Run: ``.venv/bin/python benchmarks/radiomics.py`` (about 1-2 minutes on 2 cores);
``--n 30`` for a larger cohort.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.radiomics import RadiomicsSettings  # noqa: E402
from core.radiomics import features as F  # noqa: E402
from core.radiomics.cohort import ID_COLUMNS, cohort_feature_table, static_suv_image  # noqa: E402


def run(n: int, workers: int) -> dict:
    t0 = time.perf_counter()
    df = cohort_feature_table(n, workers=workers)
    wall = time.perf_counter() - t0
    tm = df.attrs["timings"]
    n_feat = df.shape[1] - len(ID_COLUMNS)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    peak = max(t["max_rss_mb"] for t in tm) if workers > 1 else own
    return {"df": df, "wall_s": wall, "workers": workers, "patients_per_s": n / wall,
            "features_per_s": n * n_feat / wall, "n_features": n_feat,
            "generation_s": np.mean([t["generation_s"] for t in tm]),
            "static_s": np.mean([t["static_s"] for t in tm]), "dynamic_s": np.mean([t["dynamic_s"] for t in tm]),
            "peak_mb": peak, "n_processes": len({t["pid"] for t in tm})}


def side_by_side(a: dict, b: dict) -> None:
    rows = [("workers", "{:d}", "workers"), ("processes used", "{:d}", "n_processes"),
            ("wall time, s", "{:.1f}", "wall_s"), ("patients / s", "{:.3f}", "patients_per_s"),
            ("feature values / s", "{:.0f}", "features_per_s"),
            ("per patient: generation, s", "{:.2f}", "generation_s"),
            ("per patient: static features, s", "{:.2f}", "static_s"),
            ("per patient: dynamic features, s", "{:.2f}", "dynamic_s"),
            ("memory peak per process, MiB", "{:.0f}", "peak_mb")]
    print(f"{'':<36}{'serial':>12}{'parallel':>12}")
    for label, fmt, key in rows:
        print(f"{label:<36}{fmt.format(a[key]):>12}{fmt.format(b[key]):>12}")


def roi_scaling() -> None:
    from scipy import ndimage

    from core.phantoms.brain_fdopa import generate_patient

    case = generate_patient(0)
    static = static_suv_image(case.pet)
    settings = dataclasses.replace(RadiomicsSettings.pet_suv(), convert_to_suv=False)
    base = np.asarray(case.tumour_mask.data, bool)
    families = ["li", "st", "ih", "ivh", "cm", "rlm", "szm", "dzm", "ngtdm", "ngldm"]
    print("\n== morphology cost vs ROI size (static SUV image, patient 0) ==")
    print(f"{'ROI voxels':>10}{'extract, s':>12}{'no morph, s':>13}{'morph share':>13}")
    F.extract(static, case.tumour_mask, settings)  # warm-up (imports)
    for it in (0, 1, 2, 4):
        roi = ndimage.binary_dilation(base, iterations=it) if it else base
        mask = case.tumour_mask.with_data(roi.astype(np.uint8))
        t0 = time.perf_counter()
        F.extract(static, mask, settings)
        full = time.perf_counter() - t0
        img, r = F._prepare(static, mask, settings)
        kw = F._mirp_kwargs(settings, img.modality) | {"base_feature_families": families}
        t0 = time.perf_counter()
        F._run_mirp(img, r, kw)
        rest = time.perf_counter() - t0
        print(f"{int(roi.sum()):>10}{full:>12.2f}{rest:>13.2f}{max(full - rest, 0) / full:>13.0%}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=6, help="patients (default 6)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default all cores)")
    ap.add_argument("--no-roi-scaling", action="store_true", help="skip the morphology-vs-ROI-size timing")
    args = ap.parse_args()
    import mirp  # noqa: F401
    from importlib.metadata import version

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, mirp {version('mirp')}, numpy {np.__version__}")
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"\n== radiomics of {args.n} demo patients (static SUV + TTP + slope maps) ==")
    serial = run(args.n, 1)
    parallel = run(args.n, max(1, args.workers))
    print(f"{serial['n_features']} features per patient")
    side_by_side(serial, parallel)
    a, b = serial["df"], parallel["df"]
    same = a.iloc[:, :len(ID_COLUMNS)].equals(b.iloc[:, :len(ID_COLUMNS)]) and np.allclose(
        a.iloc[:, len(ID_COLUMNS):].to_numpy(float), b.iloc[:, len(ID_COLUMNS):].to_numpy(float),
        rtol=1e-9, atol=0, equal_nan=True)
    print(f"serial and parallel tables identical: {same}")
    if not args.no_roi_scaling:
        roi_scaling()


if __name__ == "__main__":
    main()
