"""PET tracer kinetics: compartment models, time-activity curves, graphical analyses.

Times in the public APIs are **minutes**, rate constants **1/min**, ``K1`` in
ml/cm3/min (ml/g/min at unit tissue density), blood volume fraction ``vB`` unitless.
Frame timing crosses the boundary from :class:`core.imaging.DynamicVolume`, which keeps
seconds, through ``frame_start_min``/``frame_end_min``.

The forward models live in :mod:`core.kinetics.compartment`.
"""

from core.kinetics.compartment import (
    convolve_exponentials,
    frame_average,
    irreversible_two_tissue_tac,
    macro_parameters,
    model_tac,
    one_tissue_irf,
    one_tissue_tac,
    two_tissue_irf,
    two_tissue_tac,
)

__all__ = [
    "convolve_exponentials",
    "frame_average",
    "irreversible_two_tissue_tac",
    "macro_parameters",
    "model_tac",
    "one_tissue_irf",
    "one_tissue_tac",
    "two_tissue_irf",
    "two_tissue_tac",
]
