"""Dosimetry of radionuclide therapy (issue 6): nuclear data, time-integrated activity, dose engines.

Modules
-------
nuclides   half-lives, decay chains (radioactivedecay) and ICRP-107 emissions (icrp107-database)
tia        time-integrated activity of regions (exponential fits by AICc, trapezoid with tail, single
           time point) and of voxels (trapezoid or mono-exponential tail)
local      absorbed dose by local energy deposition
"""

from core.dosimetry.nuclides import NuclideData, canonical_name, decay_factor, nuclide_data
from core.dosimetry.local import local_deposition_dose
from core.dosimetry.tia import TIAFit, fit_tia, single_time_point_tia, trapezoid_tia, voxel_tia

__all__ = ["NuclideData", "canonical_name", "decay_factor", "nuclide_data", "TIAFit", "fit_tia",
           "single_time_point_tia", "trapezoid_tia", "voxel_tia", "local_deposition_dose"]
