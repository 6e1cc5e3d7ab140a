"""A case store whose studies already hold radiomics Results, for tests of the cohort code.

The feature values are drawn from two seeded Gaussians (a shift in two features between
progression and radionecrosis), stored exactly as :func:`core.radiomics.cases.case_radiomics`
stores real ones, so that the cohort evaluation can be tested without five seconds of
feature extraction per case. Real extraction is tested in test_radiomics_cohort.py and on
the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.radiomics.cases import FEATURES_KIND, _parameters
from core.radiomics.settings import RadiomicsSettings
from tests.support import case_data as cd

N_FEATURES = 12


def seed_radiomics_store(repo, tmp: Path, n: int = 12, seed: int = 0) -> list[int]:
    """Import ``n`` tiny dynamic PETs with tumour masks and labels and store synthetic features."""
    rng = np.random.default_rng(seed)
    pet = cd.pet_dynamic()
    path = cd.write_nifti_file(pet, Path(tmp) / "pet.nii.gz")
    ids = []
    for i in range(n):
        series = repo.import_series(path, pseudonym=f"RAD-{i:03d}", site="AB"[i % 2])
        sid = series.study_id
        repo.add_mask(sid, cd.mask_on(pet), "tumour")
        label = "progression" if i % 2 == 0 else "radionecrosis"
        repo.set_label(sid, label, source="synthetic ground truth", molecular={"idh": "wildtype"})
        values = rng.normal(size=N_FEATURES)
        values[:2] += 1.5 * (label == "progression")
        feats = {f"static_stat_f{j:02d}": float(v) for j, v in enumerate(values)}
        feats["static_stat_undefined"] = float("nan") if i == 0 else float(rng.normal())
        case = repo.get_case(sid)
        repo.add_result(sid, FEATURES_KIND, _parameters(case, RadiomicsSettings.pet_suv(), True, "FDOPA"),
                        {"features": feats, "n_features": len(feats)})
        ids.append(sid)
    return ids
