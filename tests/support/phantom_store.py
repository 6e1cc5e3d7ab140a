"""A case store holding one generated phantom patient (full PET/MRI study), for the deep-model tests."""

from __future__ import annotations

from pathlib import Path


def one_patient_store(tmp: Path, *, seed: int, site: str):
    """Generate patient 0 of ``seed`` at ``site``, import it; return ``(repo, study_id)`` (close the repo)."""
    from core.cases.repository import CaseRepository
    from core.phantoms import generate_cohort

    manifest = generate_cohort(Path(tmp) / "cohort", n=1, seed=seed, site=site)
    repo = CaseRepository(f"sqlite:///{Path(tmp) / 'cases.db'}", Path(tmp) / "data")
    (sid,) = repo.import_cohort(manifest)
    return repo, sid
