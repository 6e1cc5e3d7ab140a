r"""Inverse physics-informed neural network (I-PINN) for drug-release transport parameters.

Solves the :class:`~core.drug_release.inverse.InverseProblem` (the unknowns, data and
noise model are defined there; the PDEs are those of :mod:`core.drug_release.transport`)
by training, at the same time, a network that represents the concentrations and the
logarithms of the unknown parameters (Raissi, Perdikaris & Karniadakis 2019).

Network
-------
A tanh multilayer perceptron maps :math:`(\hat x, \hat y, \hat t) \in [-1, 1]^3` (space scaled
by the domain size, time by the last imaging time :math:`T`) through fixed random Fourier
features of space (Tancik et al. 2020; scale ``fourier_scale`` cycles per unit of
:math:`\hat x`, default 1, so that vessel patterns a few voxels wide can be represented) to the
concentrations, µM per tissue volume,

.. math:: c_k(x, t) = s_k\,\mathrm{softplus}(N_k(x, t))\,\tanh(t/\tau), \qquad k \in \{L, F, B\},

non-negative and exactly zero at :math:`t = 0` (the initial condition "no drug" is a hard
constraint, so there is no initial-condition loss term); :math:`s_L` is the largest observed
encapsulated and :math:`s_F = s_B` the largest observed released concentration,
:math:`\tau = T/50`. Each unknown :math:`\theta` lives in log space inside its bounds,
:math:`\log\theta = \log lo + (\log hi - \log lo)\,\mathrm{sigmoid}(z)`, with :math:`z`
started at :attr:`Unknown.initial`.

Loss (in units of the observation noise)
----------------------------------------
.. math::

   \mathcal L = \frac{1}{N_d}\sum \Bigl(\frac{c_L - y_L}{\sigma_L}\Bigr)^2
   + \Bigl(\frac{c_F + c_B - y_R}{\sigma_R}\Bigr)^2
   \;+\; w\,\frac{1}{3N_c}\sum_{k}\sum_{j}\Bigl(\frac{r_k(x_j, t_j)}{\sigma_k\,\rho_k}\Bigr)^2

* data term: the same weighting as the classical inverse, (pred - obs)/noise_sd of the
  species (:math:`\sigma_L` = ``problem.noise_sd("encapsulated")``, :math:`\sigma_R` =
  ``problem.noise_sd("released")``; equal when the problem gives one SD), on every voxel
  centre at every imaging time, for the two observed species (:math:`N_d` values in all, so
  that the term is ~1 at the noise level) (:data:`~core.drug_release.inverse.OBSERVED`);
* PDE term: the residuals :math:`r_k = \partial_t c_k - \mathrm{rhs}_k` of the three
  transport equations at ``collocation`` random points per iteration (uniform in space,
  :math:`t = T u^2` in time, denser early when the drug rises), derivatives by automatic
  differentiation. Residual :math:`k` is divided by :math:`\sigma_k\rho_k`, with
  :math:`\sigma_k` the noise SD of the map that observes species :math:`k` (:math:`\sigma_L`
  for the carrier, :math:`\sigma_R` for free and bound drug), and
  :math:`\rho_k = 1/T + \kappa_k` and :math:`\kappa_k` the largest first-order loss rate of
  species :math:`k` (exchange with plasma, drainage, release or uptake, at the start
  values): a residual that would offset the quasi-steady concentration by one noise SD
  weighs like one SD of data misfit. ``pde_weight`` :math:`w` defaults to 0.1 (this work:
  1 let the unconverged PDE term override the data early in training, 0.01 left the
  parameters drifting).

Training (this work): Adam, learning rates falling tenfold over the run. The first
``warmup`` fraction of the iterations fits the data only; during the next ``warmup`` fraction
the PDE term is on but the parameters stay at their start values (the network first meets
the PDE); then network and parameters are trained together. (An L-BFGS stage on a fixed
collocation set, tried as the last 30 % of the run, over-fitted the points and then
diverged; it is not offered.)

The known coefficient fields (vessel surface :math:`S/V`, interstitial fraction, fluid
parameters, permeabilities...) are given on the grid; they are built on the grid each
iteration (they depend on the unknowns) and interpolated bilinearly at the collocation
points by a differentiable gather, so that the divergence terms can be differentiated
through them.

Pressure (our choice, instead of a second network)
--------------------------------------------------
The steady IFP of :func:`~core.drug_release.pressure.interstitial_pressure` is affine in a
scalar vascular pressure :math:`p_v` (the source is :math:`L_p S/V (p_v - \sigma_T\Delta\pi)
+ L_{pL} S_L/V p_L`): :math:`p = B + p_v A` with :math:`B` the solution at :math:`p_v = 0`
and :math:`A` the difference to the one at :math:`p_v = 1`. Both are solved once by the
finite-volume solver before training; the pressure, the Darcy velocity (cell-centred mean of
the face velocities of :func:`~core.drug_release.pressure.interstitial_velocity`), its
divergence, the filtration :math:`J_v` and the lymph drainage are then exact, differentiable
functions of the learnable :math:`p_v`, with no Darcy residual to balance. The convective
term is written :math:`\nabla\cdot(\mathbf u w) = \mathbf u\cdot\nabla w + w\,\nabla\cdot\mathbf u`
with :math:`w = c/\varphi`.

Upwind consistency: the forward solver advects by first-order upwinding, which adds an
artificial diffusion :math:`|u_i|\,h/2` along axis :math:`i` (the modified equation). With
``upwind_diffusion=True`` (default) the PINN adds the same term to :math:`D\varphi`, so that
it fits the model the solver integrates; on real images set it to False.

Uncertainty (``InverseResult.std``)
-----------------------------------
* ``ensemble >= 2``: the networks of ``ensemble`` seeds are trained; the estimate is the
  geometric mean and the std the sample standard deviation of the members (it measures the
  spread of the optimisation, not the data noise directly);
* ``ensemble == 1``: a Gauss-Newton (Laplace) approximation on the log-parameters with the
  trained network held fixed: :math:`\mathrm{Cov} = s^2 (J^\top J)^{-1}\,N_r/N_d`, with
  :math:`J` the Jacobian of the scaled PDE residuals on a fixed set of collocation points
  (central differences), :math:`s^2` their mean square, :math:`N_r` their number and
  :math:`N_d` the number of observed values (so that the figure does not shrink with more
  collocation points); std by the delta method. It says how sharply the PDE pins each
  parameter given the fitted fields; it ignores the network's own uncertainty and is
  usually an underestimate.

Only 2D grids are handled. Bounds of the unknowns are those of the problem.

Accuracy and cost (measured, CPU, one thread, busy 2-core machine)
------------------------------------------------------------------
On :func:`~core.drug_release.inverse_demo.synthetic_problem` (24 x 24 voxels of 100 µm,
2 % noise, images at 1, 4 and 24 h, all four unknowns started a factor 2 off), the default
3000 iterations took 230-280 s and gave: carrier permeability +4.5 %, vascular pressure
-8 %, release rate +44 %, free-drug diffusion -96 %; 5000 iterations with 512 collocation
points (180 s) gave +4.0 %, -7.5 %, +39 % and -97 %: the release-rate error levels off, a
bias rather than a lack of iterations. Free-drug diffusion is not identifiable at this
resolution (its penetration length, ~80 µm, is below the voxel; the Gauss-Newton std,
3.6e6 µm²/h, says so). The Gauss-Newton std of the identifiable parameters (0.1-3 %) is far
below these errors. With the residual scaling above
the release rate is informed mostly by the carrier equation (where :math:`k_{rel} c_L` is a
small sink next to large exchange terms), so any misfit of the carrier PDE biases it; giving
the free-drug residual more weight moved the 8 x 8 test estimate from +27 % to -16 %.

A least-squares fit through the solver
(:func:`core.drug_release.inverse_classical.fit_classical`, default options, same problem
and machine) uses the exact discrete model and is both more
accurate and ~60-90 times faster here: 3 s, release rate +1.6 %, permeability -0.5 %,
vascular pressure -0.5 % (free-drug diffusion unidentifiable for it too). The PINN's
advantages are that it needs no solver in the loop (so it extends to unknown fields and to
models without a solver) and that its cost scales with the network and the collocation
points, not with the grid. A GPU (larger batches and networks) and many more iterations are
what would improve it most. While the PDE residual has not converged the estimates depend on
the start (8 x 8 test problem, 500 iterations: +23 % from twice the truth, +67 % from half).

References
----------
.. [1] Raissi M, Perdikaris P, Karniadakis GE. Physics-informed neural networks: a deep
   learning framework for solving forward and inverse problems involving nonlinear partial
   differential equations. J Comput Phys 2019;378:686-707.
.. [2] Tancik M, Srinivasan PP, Mildenhall B, et al. Fourier features let networks learn high
   frequency functions in low dimensional domains. NeurIPS 2020.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from core.drug_release.inverse import InverseProblem, InverseResult, with_parameters
from core.drug_release.pressure import (fluid_fields, filtration_rate_per_h, interstitial_pressure,
                                        interstitial_velocity, lymph_drainage_per_h)
from core.drug_release.transport import param_fields
from core.errors import InputError

__all__ = ["fit_pinn", "PINN_DEFAULTS"]

#: Default options of :func:`fit_pinn` (this work: a CPU budget of a few minutes on 24 x 24).
PINN_DEFAULTS = dict(iterations=3000, hidden=64, layers=3, lr=3e-3, lr_params=0.1, collocation=1024,
                     fourier_scale=1.0, warmup=0.1, pde_weight=0.1, ensemble=1)

_CHANNELS = ("phi", "gain_l", "gain_f", "drag_l", "drag_f", "jp", "jm", "krel", "kon", "koff",
             "dl_x", "dl_y", "df_x", "df_y", "ux", "uy", "divu", "q")


# ----------------------------------------------------------------------------- validation
def _check_options(problem, o):
    if not isinstance(problem, InverseProblem):
        raise InputError(f"expected an InverseProblem, got {type(problem).__name__}",
                         fix="Build one with core.drug_release.inverse.InverseProblem(...).")
    if problem.grid.ndim != 2:
        raise InputError(f"the I-PINN handles 2D grids; this grid is {problem.grid.shape}",
                         fix="Use a 2D slice, or the classical inverse for 3D.")
    ints = {"iterations": 1, "hidden": 2, "layers": 1, "collocation": 8, "ensemble": 1}
    for k, lo in ints.items():
        v = o[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"{k} = {v!r} is not an integer >= {lo}", fix=f"Give {k} >= {lo}.")
    for k in ("lr", "lr_params", "fourier_scale"):
        if not (isinstance(o[k], (int, float)) and math.isfinite(o[k]) and o[k] > 0):
            raise InputError(f"{k} = {o[k]!r} is not a positive number", fix=f"Give {k} > 0.")
    if not (isinstance(o["pde_weight"], (int, float)) and math.isfinite(o["pde_weight"]) and o["pde_weight"] >= 0):
        raise InputError(f"pde_weight = {o['pde_weight']!r} is not >= 0", fix="Give pde_weight >= 0 (default 0.1).")
    if not (isinstance(o["warmup"], (int, float)) and 0 <= o["warmup"] < 0.5):
        raise InputError(f"warmup = {o['warmup']!r} is not a fraction in [0, 0.5)",
                         fix="Give the fraction of iterations fitted to the data only, in [0, 0.5), e.g. 0.1.")


# ----------------------------------------------------------------------------- known fields
def _pressure_parts(problem):
    """Pressure, velocity, divergence, filtration and drainage as (offset, slope in p_v) grid fields."""
    grid, fluid = problem.grid, problem.base.fluid
    h = float(grid.spacing_um)

    def parts(p, fl):
        uy, ux = interstitial_velocity(p, grid, fl)
        div = (ux[:, 1:] - ux[:, :-1]) / h + (uy[1:, :] - uy[:-1, :]) / h
        return {"p": p, "ux": 0.5 * (ux[:, 1:] + ux[:, :-1]), "uy": 0.5 * (uy[1:, :] + uy[:-1, :]), "divu": div,
                "jv": filtration_rate_per_h(p, grid, fl), "q": lymph_drainage_per_h(p, grid, fl)}

    if "vascular_pressure_mmhg" not in problem.names:
        base = parts(interstitial_pressure(grid, fluid), fluid)
        return base, {k: np.zeros_like(v) for k, v in base.items()}
    f0 = dataclasses.replace(fluid, vascular_pressure_mmhg=0.0)
    f1 = dataclasses.replace(fluid, vascular_pressure_mmhg=1.0)
    b = parts(interstitial_pressure(grid, f0), f0)
    one = parts(interstitial_pressure(grid, f1), f1)
    return b, {k: one[k] - b[k] for k in b}


class _Fields:
    """Builds the coefficient channels on the grid (torch) as functions of the unknowns."""

    def __init__(self, problem, torch, dev, upwind_diffusion):
        self.torch, self.names = torch, problem.names
        g = problem.grid
        self.h = float(g.spacing_um)
        self.shape = g.shape
        f = param_fields(problem.base, g.shape)
        fluid_fields(problem.base.fluid, g.shape)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a, float), dtype=torch.float32, device=dev)  # noqa: E731
        self.sv = t(g.vessel_surface_per_um)
        self.f = {k: t(v) for k, v in f.items()}
        b, a = _pressure_parts(problem)
        self.pb, self.pa = {k: t(v) for k, v in b.items()}, {k: t(v) for k, v in a.items()}
        self.upwind = bool(upwind_diffusion)
        pattern = problem.carrier_permeability_pattern
        self.pattern = t(np.ones(g.shape) if pattern is None else pattern)

    def build(self, values: dict):
        """Channel stack (C, H, W); ``values`` maps unknown names to torch scalars."""
        f = dict(self.f)
        for k in ("release_per_h", "diffusion_free_um2_per_h", "permeability_carrier_um_per_h"):
            if k in values:
                f[k] = values[k] * (self.pattern if k == "permeability_carrier_um_per_h" else
                                    self.torch.ones_like(self.sv))
        pv = values.get("vascular_pressure_mmhg", self.torch.zeros((), device=self.sv.device))
        fl = {k: self.pb[k] + pv * self.pa[k] for k in self.pb}
        phi, sv, relu = f["interstitial_fraction"], self.sv, self.torch.relu
        art = 0.5 * self.h if self.upwind else 0.0
        ch = {"phi": phi, "gain_l": f["permeability_carrier_um_per_h"] * sv,
              "gain_f": f["permeability_free_um_per_h"] * sv,
              "drag_l": 1 - f["reflection_carrier"], "drag_f": 1 - f["reflection_free"],
              "jp": relu(fl["jv"]), "jm": relu(-fl["jv"]), "krel": f["release_per_h"], "kon": f["uptake_per_h"],
              "koff": f["efflux_per_h"],
              "dl_x": f["diffusion_carrier_um2_per_h"] * phi + art * fl["ux"].abs(),
              "dl_y": f["diffusion_carrier_um2_per_h"] * phi + art * fl["uy"].abs(),
              "df_x": f["diffusion_free_um2_per_h"] * phi + art * fl["ux"].abs(),
              "df_y": f["diffusion_free_um2_per_h"] * phi + art * fl["uy"].abs(),
              "ux": fl["ux"], "uy": fl["uy"], "divu": fl["divu"], "q": relu(fl["q"])}
        return self.torch.stack([ch[k] for k in _CHANNELS]), fl["p"]

    def rates(self, values):
        """Largest first-order loss rate per species, 1/h (for residual scaling)."""
        ch, _ = self.build(values)
        c = dict(zip(_CHANNELS, ch))
        lose_l = (c["gain_l"] + c["drag_l"] * c["jm"] + c["q"]) / c["phi"] + c["krel"]
        lose_f = (c["gain_f"] + c["drag_f"] * c["jm"] + c["q"]) / c["phi"] + c["kon"]
        return [float(lose_l.max().detach()), float(lose_f.max().detach()), float(c["koff"].max().detach())]


def _interp(torch, fields, x, y, h):
    """Bilinear interpolation of (C, H, W) cell-centred fields at points (µm), differentiable in x, y."""
    _, ny, nx = fields.shape
    gx = (x / h - 0.5).clamp(0, nx - 1)
    gy = (y / h - 0.5).clamp(0, ny - 1)
    ix = gx.detach().floor().clamp(0, nx - 2).long()
    iy = gy.detach().floor().clamp(0, ny - 2).long()
    fx, fy = gx - ix, gy - iy
    v00, v01 = fields[:, iy, ix], fields[:, iy, ix + 1]
    v10, v11 = fields[:, iy + 1, ix], fields[:, iy + 1, ix + 1]
    return (v00 * (1 - fx) * (1 - fy) + v01 * fx * (1 - fy) + v10 * (1 - fx) * fy + v11 * fx * fy)


def _plasma_table(problem, t_end, n=2001):
    t = np.linspace(0.0, t_end, n)
    out = []
    for fn in (problem.plasma.carrier_uM, problem.plasma.free_uM):
        try:
            v = np.broadcast_to(np.asarray(fn(t), float), t.shape)
        except Exception:                                   # not vectorised
            v = np.array([float(fn(float(s))) for s in t])
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise InputError("a plasma curve is negative or not finite over the imaging period",
                             fix="Give plasma curves that are finite and >= 0 µM.")
        out.append(v)
    return np.stack(out)


# ----------------------------------------------------------------------------- network
def _network(torch, hidden, layers, fourier_scale, gen):
    nn = torch.nn
    n_f = max(1, hidden // 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bmat", torch.randn(2, n_f, generator=gen) * fourier_scale * 2 * math.pi)
            dims = [2 * n_f + 3] + [hidden] * layers
            self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
            self.out = nn.Linear(hidden, 3)
            for lin in list(self.hidden) + [self.out]:
                bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))   # Glorot uniform
                with torch.no_grad():
                    lin.weight.uniform_(-bound, bound, generator=gen)
                    lin.bias.zero_()

        def forward(self, z):
            proj = z[:, :2] @ self.bmat
            a = torch.cat([torch.sin(proj), torch.cos(proj), z], dim=1)
            for lin in self.hidden:
                a = torch.tanh(lin(a))
            return self.out(a)

    return Net()


class _Model:
    """Network, log-parameters and the loss terms of one ensemble member."""

    def __init__(self, problem, torch, dev, opts, seed, fields):
        self.torch, self.dev, self.p = torch, dev, problem
        gen = torch.Generator().manual_seed(int(seed))
        self.net = _network(torch, opts["hidden"], opts["layers"], opts["fourier_scale"], gen).to(dev)
        self.gen = torch.Generator(device=dev).manual_seed(int(seed) + 7919)
        self.fields = fields
        g = problem.grid
        ny, nx = g.shape
        self.h = float(g.spacing_um)
        self.size = (nx * self.h, ny * self.h)
        self.t_end = float(problem.times_h[-1])
        self.tau = self.t_end / 50.0
        obs = problem.observed
        self.sigma_l = problem.noise_sd("encapsulated")
        self.sigma_r = problem.noise_sd("released")
        s_l = max(float(np.max(obs["encapsulated"])), self.sigma_l)
        s_r = max(float(np.max(obs["released"])), self.sigma_r)
        self.scale = torch.tensor([s_l, s_r, s_r], dtype=torch.float32, device=dev)
        # PDE residual of carrier, free, bound drug in units of the noise of the map that observes it
        self.sigma = (self.sigma_l if self.sigma_l == self.sigma_r else
                      torch.tensor([self.sigma_l, self.sigma_r, self.sigma_r], dtype=torch.float32, device=dev))
        lo = np.log([u.bounds[0] for u in problem.unknowns])
        hi = np.log([u.bounds[1] for u in problem.unknowns])
        frac = np.clip((np.log(problem.initial_vector()) - lo) / (hi - lo), 1e-4, 1 - 1e-4)
        self.lo = torch.tensor(lo, dtype=torch.float32, device=dev)
        self.span = torch.tensor(hi - lo, dtype=torch.float32, device=dev)
        self.z = torch.nn.Parameter(torch.tensor(np.log(frac / (1 - frac)), dtype=torch.float32, device=dev))
        yy, xx = np.mgrid[:ny, :nx]
        pts = [np.column_stack([(xx.ravel() + 0.5) * self.h, (yy.ravel() + 0.5) * self.h, np.full(nx * ny, t)])
               for t in problem.times_h]
        self.data_pts = torch.tensor(np.concatenate(pts), dtype=torch.float32, device=dev)
        self.obs_l = torch.tensor(obs["encapsulated"].reshape(-1), dtype=torch.float32, device=dev)
        self.obs_r = torch.tensor(obs["released"].reshape(-1), dtype=torch.float32, device=dev)
        self.plasma = torch.tensor(_plasma_table(problem, self.t_end), dtype=torch.float32, device=dev)
        rho = [1.0 / self.t_end + k for k in fields.rates(self.values())]
        self.rho = torch.tensor(rho, dtype=torch.float32, device=dev)

    def log_values(self):
        return self.lo + self.span * self.torch.sigmoid(self.z)

    def values(self, log_values=None):
        lv = self.log_values() if log_values is None else log_values
        return {n: self.torch.exp(lv[i]) for i, n in enumerate(self.p.names)}

    def conc(self, pts):
        """Concentrations (N, 3) µM at points (N, 3) = (x µm, y µm, t h)."""
        torch = self.torch
        z = torch.stack([2 * pts[:, 0] / self.size[0] - 1, 2 * pts[:, 1] / self.size[1] - 1,
                         2 * pts[:, 2] / self.t_end - 1], dim=1)
        ramp = torch.tanh(pts[:, 2:3] / self.tau)
        return self.scale * torch.nn.functional.softplus(self.net(z)) * ramp

    def data_loss(self):
        c = self.conc(self.data_pts)
        rl = (c[:, 0] - self.obs_l) / self.sigma_l
        rr = (c[:, 1] + c[:, 2] - self.obs_r) / self.sigma_r
        return 0.5 * ((rl ** 2).mean() + (rr ** 2).mean())

    def sample(self, n):
        torch, g = self.torch, self.gen
        u = torch.rand(n, 3, generator=g, device=self.dev)
        return torch.stack([u[:, 0] * self.size[0], u[:, 1] * self.size[1],
                            self.t_end * (1e-3 + (1 - 1e-3) * u[:, 2] ** 2)], dim=1)

    def residuals(self, pts, log_values=None):
        """Scaled PDE residuals (N, 3) of encapsulated, free and bound drug at ``pts``."""
        torch = self.torch
        pts = pts.detach().requires_grad_(True)
        x, y, t = pts[:, 0], pts[:, 1], pts[:, 2]
        stack, _ = self.fields.build(self.values(log_values))
        c = dict(zip(_CHANNELS, _interp(torch, stack, x, y, self.h)))
        conc = self.conc(pts)
        cl, cf, cb = conc[:, 0], conc[:, 1], conc[:, 2]
        pos = t.detach() / self.t_end * (self.plasma.shape[1] - 1)
        i0 = pos.floor().clamp(0, self.plasma.shape[1] - 2).long()
        w1 = pos - i0
        cp = self.plasma[:, i0] * (1 - w1) + self.plasma[:, i0 + 1] * w1
        grad = lambda out, inp: torch.autograd.grad(out.sum(), inp, create_graph=True)[0]  # noqa: E731

        def transport(ck, dx, dy, gain, drag, cpk):
            w = ck / c["phi"]
            gw = grad(w, pts)
            fx, fy = dx * gw[:, 0], dy * gw[:, 1]
            div = grad(fx, pts)[:, 0] + grad(fy, pts)[:, 1]
            adv = c["ux"] * gw[:, 0] + c["uy"] * gw[:, 1] + w * c["divu"]
            rhs = (div - adv + gain * (cpk - w) + drag * (c["jp"] * cpk - c["jm"] * w) - c["q"] * w)
            return gw[:, 2] * c["phi"], rhs

        dl, rhs_l = transport(cl, c["dl_x"], c["dl_y"], c["gain_l"], c["drag_l"], cp[0])
        df, rhs_f = transport(cf, c["df_x"], c["df_y"], c["gain_f"], c["drag_f"], cp[1])
        db = grad(cb, pts)[:, 2]
        r_l = dl - (rhs_l - c["krel"] * cl)
        r_f = df - (rhs_f + c["krel"] * cl - c["kon"] * cf + c["koff"] * cb)
        r_b = db - (c["kon"] * cf - c["koff"] * cb)
        return torch.stack([r_l, r_f, r_b], dim=1) / (self.sigma * self.rho)


# ----------------------------------------------------------------------------- training
def _train(problem, torch, dev, o, seed, fields, progress, offset, width):
    m = _Model(problem, torch, dev, o, seed, fields)
    opt = torch.optim.Adam([{"params": m.net.parameters(), "lr": o["lr"]},
                            {"params": [m.z], "lr": o["lr_params"]}])
    n_it = int(o["iterations"])
    n_warm = int(o["warmup"] * n_it)
    n_hold = min(n_it, 2 * n_warm)          # the parameters wait until the network has met the PDE
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.1 ** (i / max(n_it - 1, 1)))
    hist, h_data, h_pde = (np.empty(n_it) for _ in range(3))
    h_par = np.empty((n_it, len(problem.names)))
    for it in range(n_it):
        physics = it >= n_warm and o["pde_weight"] > 0
        opt.zero_grad(set_to_none=True)
        ld = m.data_loss()
        if physics or it % 25 == 0 or it == n_it - 1:
            lp = (m.residuals(m.sample(o["collocation"])) ** 2).mean()
        else:
            lp = torch.tensor(float("nan"))
        loss = ld + o["pde_weight"] * lp if physics else ld
        if not bool(torch.isfinite(loss)):
            raise InputError(f"the I-PINN training diverged at iteration {it + 1} (loss {float(loss.detach())})",
                             fix="Lower lr, lr_params or pde_weight, or check the data scale.")
        loss.backward()
        if it < n_hold:
            m.z.grad = None
        opt.step()
        sched.step()
        hist[it], h_data[it], h_pde[it] = float(loss.detach()), float(ld.detach()), float(lp.detach())
        h_par[it] = np.exp(m.log_values().detach().cpu().numpy())
        if progress is not None and (it % 50 == 0 or it == n_it - 1):
            progress(offset + width * (it + 1) / n_it, f"I-PINN iteration {it + 1}/{n_it}, loss {hist[it]:.4g}")
    return m, hist, h_data, h_pde, h_par


def _gauss_newton_std(m, problem, n_points):
    """One-SD of each parameter, Gauss-Newton on the log-parameters with the network fixed (module docstring)."""
    torch = m.torch
    pts = m.sample(n_points)
    lv = m.log_values().detach()
    r0 = m.residuals(pts, lv).detach().reshape(-1)
    cols, eps = [], 1e-2
    for i in range(lv.numel()):
        d = torch.zeros_like(lv)
        d[i] = eps
        rp = m.residuals(pts, lv + d).detach().reshape(-1)
        rm = m.residuals(pts, lv - d).detach().reshape(-1)
        cols.append(((rp - rm) / (2 * eps)).cpu().numpy().astype(float))
    jac = np.stack(cols, axis=1)
    s2 = float((r0.cpu().numpy().astype(float) ** 2).mean())
    n_data = 2 * problem.observed["encapsulated"].size
    info = jac.T @ jac * n_data / jac.shape[0]
    cov = s2 * np.linalg.pinv(info)
    sd_log = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {n: float(np.exp(lv[i].item()) * sd_log[i]) for i, n in enumerate(problem.names)}


def fit_pinn(problem: InverseProblem, *, iterations: int = PINN_DEFAULTS["iterations"],
             hidden: int = PINN_DEFAULTS["hidden"], layers: int = PINN_DEFAULTS["layers"],
             lr: float = PINN_DEFAULTS["lr"], lr_params: float = PINN_DEFAULTS["lr_params"],
             collocation: int = PINN_DEFAULTS["collocation"], fourier_scale: float = PINN_DEFAULTS["fourier_scale"],
             warmup: float = PINN_DEFAULTS["warmup"], pde_weight: float = PINN_DEFAULTS["pde_weight"],
             ensemble: int = PINN_DEFAULTS["ensemble"], upwind_diffusion: bool = True, seed: int = 0,
             device=None, progress=None) -> InverseResult:
    r"""Estimate the unknown transport parameters of ``problem`` with an inverse PINN.

    Parameters
    ----------
    problem : InverseProblem
        2D grid, observations at the imaging times, unknowns with start values and bounds.
    iterations : int, default=3000
        Adam steps per ensemble member (learning rates decay tenfold over the run).
    hidden, layers : int, default=64, 3
        Width and depth of the tanh network (``hidden // 2`` spatial Fourier features).
    lr, lr_params : float, default=3e-3, 0.1
        Adam learning rates of the network and of the logit-parameters.
    collocation : int, default=1024
        Random PDE collocation points per iteration.
    fourier_scale : float, default=1.0
        SD of the spatial Fourier frequencies, cycles per unit of scaled coordinate.
    warmup : float, default=0.1
        Fraction of the iterations fitted to the data only; the parameters stay frozen for
        twice this fraction (module docstring). In [0, 0.5).
    pde_weight : float, default=0.1
        Weight :math:`w` of the PDE term (module docstring).
    ensemble : int, default=1
        Number of seeds (``seed``, ``seed + 1``...); >= 2 gives the ensemble std, 1 the
        Gauss-Newton std (module docstring).
    upwind_diffusion : bool, default=True
        Add the upwind scheme's artificial diffusion :math:`|u_i| h/2` (fit the solver's model).
    seed : int, default=0
    device : torch.device or str, optional
        Default :func:`core.config.device` (CUDA when available).
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    InverseResult
        ``method="pinn"``; ``history`` the total loss per iteration (first member);
        ``extra`` holds ``data_history``, ``pde_history`` (mean squared scaled residual; NaN
        where not evaluated in the warm-up), ``parameter_history`` (iterations x unknowns),
        ``members`` (estimates per seed), ``uncertainty``, ``final_terms``, ``device``,
        ``options``.

    Examples
    --------
    >>> from core.drug_release.inverse_demo import synthetic_problem
    >>> prob, truth = synthetic_problem(10, times_h=(1.0, 4.0), unknowns=("release_per_h",))
    >>> res = fit_pinn(prob, iterations=20, hidden=16, collocation=64, device="cpu")
    >>> res.method, len(res.history)
    ('pinn', 20)
    """
    import torch

    from core.config import device as default_device

    o = dict(iterations=iterations, hidden=hidden, layers=layers, lr=lr, lr_params=lr_params,
             collocation=collocation, fourier_scale=fourier_scale, warmup=warmup, pde_weight=pde_weight,
             ensemble=ensemble)
    _check_options(problem, o)
    dev = torch.device(device) if device is not None else default_device()
    start = time.perf_counter()
    fields = _Fields(problem, torch, dev, upwind_diffusion)
    members, runs = [], []
    for k in range(int(ensemble)):
        m, hist, hd, hp, hpar = _train(problem, torch, dev, o, int(seed) + k, fields, progress,
                                       k / ensemble, 1 / ensemble)
        members.append({n: float(v.detach()) for n, v in m.values().items()})
        runs.append((m, hist, hd, hp, hpar))
    logs = np.log([[mem[n] for n in problem.names] for mem in members])
    est = {n: float(np.exp(logs[:, i].mean())) for i, n in enumerate(problem.names)}
    if ensemble >= 2:
        std = {n: float(np.std([mem[n] for mem in members], ddof=1)) for n in problem.names}
        how = f"ensemble of {ensemble} seeds: sample SD"
    else:
        std = _gauss_newton_std(runs[0][0], problem, 4 * int(collocation))
        how = "Gauss-Newton on the log-parameters with the network fixed"
    m0, hist, hd, hp, hpar = runs[0]
    pressure = _pressure_field(problem, est)
    return InverseResult(method="pinn", estimates=est, std=std, wall_s=time.perf_counter() - start,
                         iterations=int(iterations) * int(ensemble), history=hist, pressure_mmhg=pressure,
                         extra={"data_history": hd, "pde_history": hp, "parameter_history": hpar,
                                "members": members, "uncertainty": how,
                                "final_terms": {"data": float(hd[-1]), "pde": float(hp[-1])},
                                "device": str(dev), "options": dict(o, upwind_diffusion=bool(upwind_diffusion))})


def _pressure_field(problem, est):
    """The steady IFP (mmHg) of the estimates, by the finite-volume solver."""
    fluid = with_parameters(problem.base, est).fluid
    return interstitial_pressure(problem.grid, fluid)
