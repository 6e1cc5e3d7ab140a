"""Benchmark: the drug-release engine against its baselines, measured in one run.

1. **Tofts fits.** ``core.drug_release.dce.fit_tofts`` (vectorised Levenberg-Marquardt over all
   voxels) against ``curve_fit_tofts_loop`` (one ``scipy.optimize.curve_fit`` per voxel, same model,
   bounds and exact convolution) on the same simulated curves: Parker AIF, 5 s frames over 5 min,
   Ktrans 0.05-0.5 /min, ve 0.1-0.6, vp 0-0.1 (extended), Gaussian noise 0.02 mM. Voxels per second
   of each, the speed-up (aim of issue 7: at least 100x) and the median Ktrans error of each.
2. **Forward solver.** ``core.drug_release.transport.simulate`` seconds per simulated hour on a
   2D micrometre window (128x128 at 5 um, one capillary, free-drug bolus) and a 3D voxel-scale
   tumour (48^3 at 100 um, liposomes), with the mass-ledger imbalance of each run.
3. **Inverse problems** (when ``core.drug_release.inverse_classical`` / ``pinn`` are present): the
   classical least-squares inverse through the solver against the I-PINN on the same synthetic
   problem (2 % noise, three imaging times): relative error per parameter and wall time.

Run: ``.venv/bin/python benchmarks/drug_release.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.drug_release.aif import parker_aif  # noqa: E402
from core.drug_release.dce import curve_fit_tofts_loop, fit_tofts, tofts_model  # noqa: E402
from core.drug_release.pressure import TissueGrid  # noqa: E402
from core.drug_release.transport import PlasmaInput, TransportParams, simulate  # noqa: E402


def _tofts_curves(n: int, extended: bool, rng: np.random.Generator):
    t = np.arange(0, 300.0 + 1e-9, 5.0) / 60.0
    cp = parker_aif(t, delay_min=0.25, hct=0.42)
    truth = {"Ktrans": rng.uniform(0.05, 0.5, n), "ve": rng.uniform(0.1, 0.6, n)}
    truth["vp"] = rng.uniform(0.0, 0.1, n) if extended else np.zeros(n)
    ct = tofts_model(t, cp, truth["Ktrans"], truth["ve"], truth["vp"])         # (n, T)
    return ct + rng.normal(0.0, 0.02, ct.shape), t, cp, truth


def bench_tofts(n_vectorised: int, n_loop: int) -> None:
    rng = np.random.default_rng(0)
    print("\n1. Tofts fits (Parker AIF, 5 s frames, 5 min, noise 0.02 mM)")
    for extended in (False, True):
        ct, t, cp, truth = _tofts_curves(n_vectorised, extended, rng)
        t0 = time.perf_counter()
        fit = fit_tofts(ct, t, cp, extended=extended)
        fast_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop = curve_fit_tofts_loop(ct[:n_loop], t, cp, extended=extended)
        loop_s = time.perf_counter() - t0
        fast_rate, loop_rate = n_vectorised / fast_s, n_loop / loop_s
        err_fast = np.nanmedian(np.abs(fit["Ktrans"] / truth["Ktrans"] - 1)) * 100
        err_loop = np.nanmedian(np.abs(loop["Ktrans"] / truth["Ktrans"][:n_loop] - 1)) * 100
        agree = np.nanmedian(np.abs(fit["Ktrans"][:n_loop] / loop["Ktrans"] - 1))
        name = "extended Tofts" if extended else "Tofts"
        print(f"  {name:<15} fit_tofts {fast_rate:9.0f} voxels/s ({n_vectorised} voxels, {fast_s:.2f} s, ok "
              f"{100 * fit['ok'].mean():.1f} %)   curve_fit loop {loop_rate:7.0f} voxels/s ({n_loop} voxels)   "
              f"x{fast_rate / loop_rate:6.1f}   median |Ktrans error| {err_fast:.2f} % vs {err_loop:.2f} %, "
              f"median difference {agree:.1e}")


def _micro_window(n: int = 128, spacing_um: float = 5.0) -> TissueGrid:
    yy, xx = np.mgrid[:n, :n] * spacing_um
    c = n * spacing_um / 2
    r = np.hypot(yy - c, xx - c)
    wall = (r >= 8.0) & (r < 8.0 + spacing_um)              # a capillary of about 10 um radius
    return TissueGrid(spacing_um, np.where(wall, 1.0 / spacing_um, 0.0), np.ones((n, n), bool))


def _tumour_3d(n: int = 48, spacing_um: float = 100.0, seed: int = 0) -> TissueGrid:
    rng = np.random.default_rng(seed)
    z, y, x = (np.mgrid[:n, :n, :n] - (n - 1) / 2) * spacing_um
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    tumour = r < 0.35 * n * spacing_um
    surface = np.where(tumour, 0.005, 0.01) * rng.uniform(0.5, 1.5, tumour.shape)   # 1/um (this work)
    return TissueGrid(spacing_um, surface, tumour)


def bench_solver(hours_2d: float, hours_3d: float, n3: int) -> None:
    print("\n2. Forward solver (BDF2, matrices factorised once)")
    cases = [("2D 128x128 at 5 um, free drug", _micro_window(), PlasmaInput.free_drug(10.0), hours_2d, 0.02),
             (f"3D {n3}^3 at 100 um, liposomes", _tumour_3d(n3), PlasmaInput.liposomal(20.0), hours_3d, 0.05)]
    for name, grid, plasma, hours, dt in cases:
        t0 = time.perf_counter()
        sol = simulate(grid, TransportParams(), plasma, t_end_h=hours, dt_h=dt, save_times_h=[0.0, hours])
        seconds = time.perf_counter() - t0
        print(f"  {name:<32} {seconds / hours:7.3f} s per simulated hour ({hours:g} h in {seconds:.2f} s, "
              f"dt {dt} h; mass ledger relative imbalance {sol.ledger.relative_imbalance():.1e})")


def bench_inverse(quick: bool) -> None:
    have = {m: importlib.util.find_spec(f"core.drug_release.{m}") is not None
            for m in ("inverse_demo", "inverse_classical", "pinn")}
    print("\n3. Inverse problems")
    if not have["inverse_demo"]:
        print("  (core.drug_release.inverse_demo is not present)")
        return
    from core.drug_release.inverse import relative_errors
    from core.drug_release.inverse_demo import synthetic_problem

    problem, truth = synthetic_problem()
    print(f"  synthetic problem: {'x'.join(map(str, problem.grid.shape))} grid, imaging at "
          f"{', '.join(f'{t:g}' for t in problem.times_h)} h, noise SD {problem.noise_sd_uM:.3g} uM, unknowns "
          f"{', '.join(problem.names)}")
    methods = []
    if have["inverse_classical"]:
        from core.drug_release.inverse_classical import fit_classical
        methods.append(("classical", fit_classical, {}))
    if have["pinn"]:
        from core.drug_release.pinn import fit_pinn
        methods.append(("I-PINN", fit_pinn, {"iterations": 500} if quick else {}))
    for name, fit, options in methods:
        result = fit(problem, **options)
        errors = relative_errors(result.estimates, truth)
        shown = "   ".join(f"{k} {100 * v:+.1f} % (1 sd {100 * result.std[k] / result.estimates[k]:.1f} %)"
                           for k, v in errors.items())
        print(f"  {name:<10} {result.wall_s:8.1f} s   {shown}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a look")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    bench_tofts(2_000 if args.quick else 20_000, 50 if args.quick else 300)
    bench_solver(1.0 if args.quick else 2.0, 1.0 if args.quick else 4.0, 24 if args.quick else 48)
    bench_inverse(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
