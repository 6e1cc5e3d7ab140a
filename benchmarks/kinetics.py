"""Benchmark: voxel-wise 2TCM fitting (core.kinetics.fit) against a scipy curve_fit loop.

Measured in one run, on the same simulated voxels and the same start values:

1. ``core.kinetics.fit("2tcm", ...)`` on ``--n`` voxel curves of 30 frames (batched
   Levenberg-Marquardt in torch), in float64 and float32.
2. The baseline: a loop of ``scipy.optimize.curve_fit`` (trust-region reflective with the
   same bounds and frame weights, numerical Jacobian, the exact numpy forward model of
   :mod:`core.kinetics.compartment`) over a random ``--subset`` of the same voxels, started
   from the same basis-function start values.

It prints the throughput of each (curves per second), their ratio, and how the two agree:
the parameters of the subset side by side, the cost reached (how often each finds the
lower weighted residual sum of squares) and the error against the simulated truth. Then a
whole-brain-size map (``--whole-brain`` curves, default 1.5 million), and the bias and
spread of every model on ROI-level noise.

Aims (issue 3): at least 100x the curve_fit loop on 2 CPU cores at equal accuracy, and a
1.5 M-voxel 2TCM map in under 60 s on CPU.

Run: ``.venv/bin/python benchmarks/kinetics.py`` (about 3 minutes on 2 cores);
``--device cuda`` on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import curve_fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.kinetics import fit, two_tissue_tac, one_tissue_tac  # noqa: E402
from core.kinetics.fitting import DEFAULT_BOUNDS, PARAMETERS, _basis_start, _Context, _weights  # noqa: E402
from core.kinetics._basis import ExponentialTable  # noqa: E402
from core.phantoms.frames import frame_schedule  # noqa: E402
from core.phantoms.input_function import FDOPA_POPULATION, feng_input  # noqa: E402

NAMES = PARAMETERS["2tcm"]


def schedule():
    """30 frames over 41 min (12 x 10 s, 6 x 30 s, 6 x 60 s, 6 x 5 min)."""
    fs, fd = frame_schedule(((12, 10), (6, 30), (6, 60), (6, 300)))
    return fs / 60.0, (fs + fd) / 60.0


def plasma_input(t_end):
    t = np.unique(np.concatenate([np.arange(0, 3, 0.02), np.arange(3, 15, 0.1), np.arange(15, t_end + 1e-9, 0.5)]))
    return t, feng_input(t, FDOPA_POPULATION)  # SUV units: the phantom's FDOPA population input


def simulate(n, fs, fe, t, cp, rng, noise=0.15):
    """Voxel curves of brain tissue and tumour: parameters drawn over the ranges of the
    demo phantom (core/phantoms/kinetics_fdopa.py), Poisson-like noise whose standard
    deviation is ``noise`` times the mean of a 5-min frame at the curve's late level."""
    truth = {
        "K1": np.exp(rng.uniform(np.log(0.015), np.log(0.25), n)),
        "k2": np.exp(rng.uniform(np.log(0.03), np.log(0.4), n)),
        "k3": np.exp(rng.uniform(np.log(0.003), np.log(0.08), n)),
        "k4": np.exp(rng.uniform(np.log(0.003), np.log(0.05), n)),
        "vB": rng.uniform(0.02, 0.1, n),
    }
    clean = two_tissue_tac(t, cp, truth["K1"], truth["k2"], truth["k3"], truth["k4"], vB=truth["vB"],
                           frame_start_min=fs, frame_end_min=fe)
    dur = fe - fs
    level = clean[:, -6:].mean(axis=1, keepdims=True)
    sd = noise * np.sqrt(np.maximum(clean, 0.05 * level) * level) * np.sqrt(5.0 / dur)
    return clean + rng.normal(size=clean.shape) * sd, clean, truth


def start_values(y, fs, fe, t, cp):
    lo = np.array([DEFAULT_BOUNDS[k][0] for k in NAMES])
    hi = np.array([DEFAULT_BOUNDS[k][1] for k in NAMES])
    table = ExponentialTable.build(t, cp, fs, fe, theta_max=sum(hi[1:4]) * 1.01)
    w = torch.as_tensor(_weights("duration", fs, fe))
    p0 = _basis_start("2tcm", torch.as_tensor(y), torch.sqrt(w), _Context(table, table.input_average), lo, hi)
    return p0.numpy(), lo, hi


def curve_fit_loop(y, p0, lo, hi, fs, fe, t, cp):
    """The baseline: one scipy curve_fit per voxel with the exact numpy model."""
    sigma = 1.0 / np.sqrt(_weights("duration", fs, fe))

    def model(_, K1, k2, k3, k4, vB):
        return two_tissue_tac(t, cp, K1, k2, k3, k4, vB=vB, frame_start_min=fs, frame_end_min=fe)

    out = np.full_like(p0, np.nan)
    ok = np.zeros(len(y), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(y)):
            try:
                out[i], _ = curve_fit(model, fs, y[i], p0=p0[i], sigma=sigma, bounds=(lo, hi), max_nfev=2000)
                ok[i] = True
            except (RuntimeError, ValueError):
                pass
    return out, ok


def cost(params, y, fs, fe, t, cp):
    w = _weights("duration", fs, fe)
    m = two_tissue_tac(t, cp, *(np.nan_to_num(params[:, i]) for i in range(4)), vB=np.nan_to_num(params[:, 4]),
                       frame_start_min=fs, frame_end_min=fe)
    return (w * (y - m) ** 2).sum(-1)


def vt(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[..., 0] / p[..., 1] * (1 + p[..., 2] / p[..., 3])


def ki(p):
    return p[..., 0] * p[..., 2] / (p[..., 1] + p[..., 2])


def pct(a, q=50):
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if a.size else float("nan")


def compare(args, device):
    rng = np.random.default_rng(args.seed)
    fs, fe = schedule()
    t, cp = plasma_input(fe[-1])
    y, clean, truth = simulate(args.n, fs, fe, t, cp, rng)
    print(f"\n== voxel-wise 2TCM: {args.n} curves x {fs.size} frames, device {device} ==")
    results = {}
    for dtype in (torch.float64, torch.float32):
        fit("2tcm", y[:256], fs, fe, input_time=t, input_conc=cp, device=device, dtype=dtype)  # warm-up
        tic = time.perf_counter()
        out = fit("2tcm", y, fs, fe, input_time=t, input_conc=cp, device=device, dtype=dtype)
        dt = time.perf_counter() - tic
        results[dtype] = (out, dt)
        print(f"core.kinetics.fit {str(dtype)[6:]}: {dt:7.2f} s  {args.n / dt:9.0f} curves/s  "
              f"ok {out['ok'].mean():.2%}  LM iterations median {np.median(out['n_iter']):.0f}, "
              f"99th pct {np.percentile(out['n_iter'], 99):.0f}")

    sub = rng.choice(args.n, size=args.subset, replace=False)
    p0, lo, hi = start_values(y[sub], fs, fe, t, cp)
    tic = time.perf_counter()
    p_cf, ok_cf = curve_fit_loop(y[sub], p0, lo, hi, fs, fe, t, cp)
    dt_cf = time.perf_counter() - tic
    rate_cf = args.subset / dt_cf
    print(f"scipy curve_fit loop: {dt_cf:7.2f} s for {args.subset} curves  {rate_cf:9.1f} curves/s  ok {ok_cf.mean():.2%}")

    p_true = np.stack([truth[k][sub] for k in NAMES], -1)
    for dtype, (out, dt) in results.items():
        p_ours = np.stack([out[k][sub] for k in NAMES], -1)
        both = out["ok"][sub] & ok_cf
        c_ours, c_cf = cost(p_ours, y[sub], fs, fe, t, cp), cost(p_cf, y[sub], fs, fe, t, cp)
        lower = np.mean(c_ours[both] <= c_cf[both] * (1 + 1e-6))
        rel = np.abs(c_ours[both] - c_cf[both]) / c_cf[both]
        print(f"\n-- agreement, {str(dtype)[6:]} vs curve_fit on the {both.sum()} curves both fitted --")
        print(f"speed-up: {args.n / dt / rate_cf:.0f}x   cost: ours lower or equal in {lower:.1%} of curves, "
              f"median |relative cost difference| {pct(rel):.2e}, 95th pct {pct(rel, 95):.2e}")
        print(f"{'parameter':<10}{'median |ours-cf|/cf':>22}{'median |err| ours':>20}{'median |err| cf':>18}")
        for i, name in enumerate(NAMES):
            d = np.abs(p_ours[both, i] - p_cf[both, i]) / np.abs(p_cf[both, i]).clip(1e-6)
            e_o = np.abs(p_ours[both, i] / p_true[both, i] - 1)
            e_c = np.abs(p_cf[both, i] / p_true[both, i] - 1)
            print(f"{name:<10}{pct(d):>22.2e}{pct(e_o):>20.3f}{pct(e_c):>18.3f}")
        for label, f in (("VT", vt), ("Ki", ki)):
            d = np.abs(f(p_ours[both]) - f(p_cf[both])) / np.abs(f(p_cf[both]))
            print(f"{label:<10}{pct(d):>22.2e}{pct(np.abs(f(p_ours[both]) / f(p_true[both]) - 1)):>20.3f}"
                  f"{pct(np.abs(f(p_cf[both]) / f(p_true[both]) - 1)):>18.3f}")


def whole_brain(args, device):
    if args.whole_brain <= 0:
        return
    rng = np.random.default_rng(args.seed + 1)
    fs, fe = schedule()
    t, cp = plasma_input(fe[-1])
    base, _, _ = simulate(50_000, fs, fe, t, cp, rng)
    y = base[rng.integers(0, len(base), args.whole_brain)]
    y = y * rng.uniform(0.9, 1.1, (len(y), 1))  # every voxel its own curve
    print(f"\n== whole-brain map: {len(y)} voxels x {fs.size} frames, 2TCM, device {device} ==")
    for dtype in (torch.float32, torch.float64):
        tic = time.perf_counter()
        out = fit("2tcm", y, fs, fe, input_time=t, input_conc=cp, device=device, dtype=dtype)
        dt = time.perf_counter() - tic
        print(f"{str(dtype)[6:]}: {dt:6.1f} s ({len(y) / dt:8.0f} voxels/s), ok {out['ok'].mean():.2%}")
        if not args.whole_brain_float64:
            break


def noise_report(args, device):
    """Bias and spread of every model at ROI noise (2 % of a 5-min frame), 500 realisations."""
    rng = np.random.default_rng(args.seed + 2)
    fs, fe = schedule()
    t, cp = plasma_input(fe[-1])
    n = 500

    def noisy(clean, level=0.02):
        sd = level * clean[-6:].mean() * np.sqrt(5.0 / (fe - fs))
        return clean + rng.normal(size=(n, clean.size)) * sd

    irr = two_tissue_tac(t, cp, 0.05, 0.08, 0.03, 0.0, vB=0.05, frame_start_min=fs, frame_end_min=fe)
    rev = two_tissue_tac(t, cp, 0.12, 0.17, 0.02, 0.025, vB=0.07, frame_start_min=fs, frame_end_min=fe)
    one = one_tissue_tac(t, cp, 0.06, 0.1, vB=0.0, frame_start_min=fs, frame_end_min=fe)
    ref = one_tissue_tac(t, cp, 0.04, 0.1, frame_start_min=fs, frame_end_min=fe)
    cases = [
        ("1tcm", one, {}, {"K1": 0.06, "k2": 0.1, "VT": 0.6}),
        ("2tcm_irr", irr, {}, {"K1": 0.05, "k3": 0.03, "Ki": 0.05 * 0.03 / 0.11}),
        ("2tcm", rev, {}, {"K1": 0.12, "VT": 0.12 / 0.17 * (1 + 0.02 / 0.025)}),
        ("srtm", one, {"reference": ref}, {"R1": 1.5, "BPND": 0.6 / 0.4 - 1}),
        ("patlak", irr, {"t_star": 20.0}, {"Ki": 0.95 * 0.05 * 0.03 / 0.11}),
        ("logan", one, {"t_star": 10.0}, {"VT": 0.6}),
    ]
    print("\n== bias and spread at ROI noise (2 % of a 5-min frame), 500 curves each ==")
    print("bias: median vs truth; spread: 1.4826 x median absolute deviation / median (a robust CV, since "
          "a few 2TCM fits end at k4 = 0, where VT is infinite)")
    print(f"{'model':<10}{'parameter':<10}{'truth':>10}{'bias %':>10}{'rCV %':>10}{'ok %':>8}")
    for model, clean, extra, truth in cases:
        kwargs = dict(extra)
        if "reference" not in kwargs:
            kwargs.update(input_time=t, input_conc=cp)
        out = fit(model, noisy(clean), fs, fe, device=device, **kwargs)
        for key, value in truth.items():
            v = out[key][out["ok"]]
            med = np.median(v)
            rcv = 1.4826 * np.median(np.abs(v - med)) / med
            print(f"{model:<10}{key:<10}{value:>10.4f}{100 * (med / value - 1):>10.2f}"
                  f"{100 * rcv:>10.2f}{100 * out['ok'].mean():>8.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=300)
    parser.add_argument("--whole-brain", type=int, default=1_500_000)
    parser.add_argument("--whole-brain-float64", action="store_true", help="also time the map in float64")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: THERABOARD_DEVICE / auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from core.config import device as configured

    device = torch.device(args.device) if args.device else configured()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads"
          + (f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    compare(args, device)
    whole_brain(args, device)
    noise_report(args, device)


if __name__ == "__main__":
    main()
