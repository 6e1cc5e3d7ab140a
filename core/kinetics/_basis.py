r"""Frame-averaged exponential convolutions of one input, tabulated for fast fitting.

Every compartment model in :mod:`core.kinetics.fitting` is a sum of terms
:math:`\phi\,F(\theta)`, where

.. math::

    F_f(\theta) = \frac{1}{t_{e,f} - t_{s,f}} \int_{t_{s,f}}^{t_{e,f}}
                  \int_0^t C(s)\, e^{-\theta (t - s)}\, ds\, dt

is the frame-``f`` average of the input :math:`C` convolved with one exponential. For a
given input and frame schedule :math:`F` depends on :math:`\theta` only, smoothly, so it
is computed **exactly** (the piecewise-linear recursion of
:func:`core.kinetics.compartment.convolve_exponentials`) on ``n_nodes`` values of
:math:`\theta` and joined by a cubic spline in :math:`u = \operatorname{asinh}(\theta/\theta_0)`
(nodes dense at small rates, where :math:`F` changes most with :math:`\theta`). Each fit
iteration then costs a table look-up per voxel instead of a convolution, and
:math:`\partial F/\partial\theta` (for the Jacobian) comes from the same spline.

Interpolation error: with 512 nodes up to :math:`\theta = 6` /min the spline is within
1e-9 of the exact convolution (relative to the curve's maximum) for an FDOPA-like input
and 25 frames; ``tests/unit/test_kinetics_fit.py`` checks 1e-7 for every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import CubicSpline

from core.kinetics.compartment import convolve_exponentials, frame_average

__all__ = ["ExponentialTable"]

_THETA0 = 0.02  # 1/min: below this the grid is about linear in theta, above it logarithmic


@dataclass(frozen=True)
class ExponentialTable:
    """Spline table of :math:`F(\\theta)` for one input curve and frame schedule.

    Build with :meth:`build`; evaluate with :meth:`evaluate`.

    Attributes
    ----------
    coef : torch.Tensor of shape (n_nodes - 1, 4, n_frames)
        Cubic coefficients in powers of :math:`u - u_i` (highest first).
    u0, du : float
        First node and spacing of the uniform grid in :math:`u`.
    theta_max : float
        Largest tabulated rate, 1/min.
    input_average : torch.Tensor of shape (n_frames,)
        Frame averages of the input itself.
    """

    coef: torch.Tensor
    u0: float
    du: float
    theta_max: float
    input_average: torch.Tensor

    @classmethod
    def build(cls, t_min, values, frame_start_min, frame_end_min, *, theta_max: float = 6.0,
              n_nodes: int = 512, device=None, dtype=torch.float64) -> "ExponentialTable":
        """Tabulate :math:`F(\\theta)` on ``[0, theta_max]`` (1/min).

        Parameters
        ----------
        t_min, values : array-like of shape (n_t,)
            The input curve (minutes; any concentration unit).
        frame_start_min, frame_end_min : array-like of shape (n_frames,)
        theta_max : float, default=6.0
        n_nodes : int, default=512
        device, dtype : torch device and dtype of the table.
        """
        u_max = math.asinh(theta_max / _THETA0)
        u = np.linspace(0.0, u_max, n_nodes)
        theta = _THETA0 * np.sinh(u)
        F = convolve_exponentials(t_min, values, theta, frame_start_min=frame_start_min,
                                  frame_end_min=frame_end_min)
        spline = CubicSpline(u, F, axis=0)
        coef = np.moveaxis(spline.c, 0, 1)  # (n_nodes - 1, 4, n_frames)
        avg = frame_average(t_min, values, frame_start_min, frame_end_min)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(coef), 0.0, float(u[1] - u[0]), float(theta_max), as_t(avg))

    def evaluate(self, theta: torch.Tensor, *, derivative: bool = True):
        """:math:`F(\\theta)` and :math:`dF/d\\theta` for rates of shape (N,).

        Returns tensors of shape (N, n_frames); rates are clamped to the table.
        """
        theta = theta.clamp(0.0, self.theta_max)
        u = torch.asinh(theta / _THETA0)
        n_seg = self.coef.shape[0]
        idx = ((u - self.u0) / self.du).floor().clamp(0, n_seg - 1).long()
        x = (u - (self.u0 + idx * self.du)).unsqueeze(-1)
        c = self.coef[idx]  # (N, 4, T)
        c0, c1, c2, c3 = c.unbind(1)
        # Horner's rule, in place to spare temporaries (these tensors are the hot loop's largest)
        value = torch.mul(c0, x).add_(c1).mul_(x).add_(c2).mul_(x).add_(c3)
        if not derivative:
            return value, None
        du_dtheta = torch.rsqrt(theta * theta + _THETA0 * _THETA0).unsqueeze(-1)
        slope = torch.mul(c0, 3.0 * x).add_(c1, alpha=2.0).mul_(x).add_(c2).mul_(du_dtheta)
        return value, slope
