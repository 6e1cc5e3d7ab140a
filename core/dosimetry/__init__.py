"""Dosimetry of radionuclide therapy (issue 6): nuclear data, time-integrated activity, dose engines.

Modules
-------
nuclides   half-lives, decay chains (radioactivedecay) and ICRP-107 emissions (icrp107-database)
"""

from core.dosimetry.nuclides import NuclideData, canonical_name, decay_factor, nuclide_data

__all__ = ["NuclideData", "canonical_name", "decay_factor", "nuclide_data"]
