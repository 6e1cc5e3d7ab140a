"""Validation shared by the dose engines: one place for the density-map checks."""

from __future__ import annotations

import numpy as np

from core.errors import GeometryError, InputError

__all__ = ["check_density"]


def check_density(density_g_ml, shape: tuple, *, grid: str = "activity") -> np.ndarray:
    """The density map (g/ml) as float64 of ``shape``; a scalar is broadcast.

    Raises
    ------
    GeometryError
        The map is on another grid.
    InputError
        Negative or non-finite densities.

    Examples
    --------
    >>> check_density(1.04, (2, 2, 2)).shape
    (2, 2, 2)
    """
    rho = np.asarray(density_g_ml, dtype=float)
    if rho.ndim == 0:
        rho = np.full(shape, float(rho))
    if rho.shape != tuple(shape):
        raise GeometryError(f"density map {rho.shape} and {grid} map {tuple(shape)} are on different grids",
                            fix=f"Resample the CT-derived density onto the {grid} grid first.")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise InputError("the density map holds negative or non-finite voxels", fix="Check the HU-to-density map.")
    return rho
