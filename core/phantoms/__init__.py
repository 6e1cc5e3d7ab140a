"""Synthetic demo cohorts: physically grounded phantoms for the demo, the tests and model training.

* :mod:`core.phantoms.brain_fdopa`: dynamic 18F-FDOPA brain PET with MRI in treated
  glioma (progression vs radionecrosis), sites in :mod:`core.phantoms.sites`.

Parameter values and their sources are tabulated in ``core/phantoms/README.md``.
"""

from core.phantoms.brain_fdopa import (DemoCase, cohort_labels, ct_like, generate_cohort, generate_patient,
                                       pet_grid, write_case, write_case_dicom)
from core.phantoms.sites import SITES, Site, get_site

__all__ = [
    "DemoCase",
    "generate_patient",
    "generate_cohort",
    "write_case",
    "write_case_dicom",
    "ct_like",
    "cohort_labels",
    "pet_grid",
    "SITES",
    "Site",
    "get_site",
]
