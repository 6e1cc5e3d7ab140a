"""Dosimetry of radionuclide therapy (issue 6): nuclear data, time-integrated activity, dose engines, outputs.

Modules
-------
nuclides      half-lives, decay chains (radioactivedecay) and ICRP-107 emissions (icrp107-database)
tia           time-integrated activity of regions (exponential fits by AICc, trapezoid with tail, single
              time point) and of voxels (trapezoid or mono-exponential tail)
inputs        SPECT time series + CT -> activity, density and material maps on one grid, with the checks
materials     HU -> density and tissue material (ICRP compositions from xraylib)
photons       photon interaction data (xraydb; Klein-Nishina and pair production above 800 keV) and transport
electrons     ICRP-107 beta spectra, Bethe stopping powers and condensed-history electron transport
montecarlo    the Monte Carlo dose engine (the reference), with per-voxel uncertainty
kernels       voxel S-values from the Monte Carlo, cached in assets/kernels
local         absorbed dose by local energy deposition
convolution   voxel S-value convolution by FFT with density scaling
deep          the deep-learning dose engine (3D U-Net) and its training (deep_training)
dvh           dose-volume histograms and organ dose tables
radiobiology  BED with the Lea-Catcheside factor, organ limits, cycle planning
gamma         the gamma index between two dose maps (pymedphys)
"""

from core.dosimetry.convolution import full_kernel, vsv_dose
from core.dosimetry.dvh import DVH, dose_volume_histogram, organ_dose_table
from core.dosimetry.gamma import GammaResult, gamma_index
from core.dosimetry.kernels import voxel_s_values
from core.dosimetry.local import local_deposition_dose
from core.dosimetry.nuclides import NuclideData, canonical_name, decay_factor, equilibrium_chain, nuclide_data
from core.dosimetry.radiobiology import (ORGAN_RADIOBIOLOGY, bed, bed_monoexponential, cumulative_bed,
                                         cycles_remaining, g_factor_monoexponential, lea_catcheside_g, plan_cycles)
from core.dosimetry.tia import TIAFit, fit_tia, single_time_point_tia, trapezoid_tia, voxel_tia

__all__ = ["NuclideData", "canonical_name", "decay_factor", "equilibrium_chain", "nuclide_data", "TIAFit", "fit_tia",
           "single_time_point_tia", "trapezoid_tia", "voxel_tia", "local_deposition_dose", "voxel_s_values",
           "full_kernel", "vsv_dose", "DVH", "dose_volume_histogram", "organ_dose_table", "GammaResult",
           "gamma_index", "ORGAN_RADIOBIOLOGY", "bed", "bed_monoexponential", "cumulative_bed", "cycles_remaining",
           "g_factor_monoexponential", "lea_catcheside_g", "plan_cycles"]
