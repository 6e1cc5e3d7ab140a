"""PET tracer kinetics: time-activity curves, guideline parameters, compartment and
graphical models, input functions, reference regions, sub-regions and biopsy targets.

Times in the public APIs are **minutes**, rate constants **1/min**, ``K1`` in
ml/cm3/min (ml/g/min at unit tissue density), blood volume fraction ``vB`` unitless.
Frame timing crosses the boundary from :class:`core.imaging.DynamicVolume`, which keeps
seconds, through ``frame_start_min``/``frame_end_min``.

Modules: :mod:`~core.kinetics.compartment` (forward models), :mod:`~core.kinetics.fitting`
(:func:`fit`, one call for every model and for whole-volume maps),
:mod:`~core.kinetics.graphical` (Patlak, Logan), :mod:`~core.kinetics.tac`,
:mod:`~core.kinetics.regions`, :mod:`~core.kinetics.input_functions`. Sources are listed
in ``core/kinetics/README.md``.
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
from core.kinetics.fitting import DEFAULT_BOUNDS, MODELS, PARAMETERS, check_frames, fit, predict
from core.kinetics.input_functions import (
    INPUT_SOURCES,
    INPUT_UNITS,
    InputFunction,
    check_input_function,
    cylinder_recovery_coefficient,
    image_derived_input,
    population_input,
    read_blood_tsv,
    read_input_csv,
    vessel_roi,
)
from core.kinetics.regions import (
    MidPlane,
    TemplateRegions,
    brain_mask,
    contralateral_background,
    late_image,
    midsagittal_plane,
    mirror_mask,
    template_regions,
)
from core.kinetics.tac import RegionTAC, extract_tac, sphere_radius_mm, voxel_tacs

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
    "DEFAULT_BOUNDS",
    "MODELS",
    "PARAMETERS",
    "check_frames",
    "fit",
    "predict",
    "INPUT_SOURCES",
    "INPUT_UNITS",
    "InputFunction",
    "check_input_function",
    "cylinder_recovery_coefficient",
    "image_derived_input",
    "population_input",
    "read_blood_tsv",
    "read_input_csv",
    "vessel_roi",
    "MidPlane",
    "TemplateRegions",
    "brain_mask",
    "contralateral_background",
    "late_image",
    "midsagittal_plane",
    "mirror_mask",
    "template_regions",
    "RegionTAC",
    "extract_tac",
    "sphere_radius_mm",
    "voxel_tacs",
]
