"""Synthetic demo cohorts: physically grounded phantoms for the demo, the tests and model training.

* :mod:`core.phantoms.brain_fdopa`: dynamic 18F-FDOPA brain PET with MRI in treated
  glioma (progression vs radionecrosis), sites in :mod:`core.phantoms.sites`.
* :mod:`core.phantoms.torso`: radionuclide-therapy patients ([177Lu]Lu-PSMA-617 or
  -DOTATATE): torso CT and quantitative SPECT at several times with organ kinetics, anatomy
  in :mod:`core.phantoms.torso_anatomy`.
* :mod:`core.phantoms.drug_tumour`: preclinical mouse tumours for drug-release studies (free
  doxorubicin, liposomes, thermosensitive liposomes under heating): vessel network, DCE, CEST and
  drug observations with the transport truth (vessels and fields in
  :mod:`core.phantoms.drug_tumour_vessels`).

Parameter values and their sources are tabulated in ``core/phantoms/README.md``.
"""

from core.phantoms.brain_fdopa import (DemoCase, cohort_labels, ct_like, generate_cohort, generate_patient,
                                       pet_grid, write_case, write_case_dicom)
from core.phantoms.drug_tumour import (SCENARIOS, DrugStudy, generate_drug_cohort, generate_drug_study,
                                       write_drug_study)
from core.phantoms.sites import SITES, Site, get_site
from core.phantoms.torso import (TherapyCase, generate_therapy_cohort, generate_therapy_patient, label_activity_mbq,
                                 write_therapy_case)

__all__ = [
    "SCENARIOS",
    "DrugStudy",
    "generate_drug_study",
    "write_drug_study",
    "generate_drug_cohort",
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
    "TherapyCase",
    "generate_therapy_patient",
    "generate_therapy_cohort",
    "write_therapy_case",
    "label_activity_mbq",
]
