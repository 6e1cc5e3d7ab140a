"""The demo cohort in the case store: the synthetic FDOPA cohort, the therapy patients and the drug studies.

Used by ``make run`` on an empty store (through ``python -m core init --demo-if-empty``)
and by the worklist's "Generate demo cohort" button, so that both do exactly the same
thing. Besides the ``n`` FDOPA glioma patients of :mod:`core.phantoms.brain_fdopa`, the
cohort holds ``n_therapy`` [177Lu]Lu-PSMA-617 therapy patients of :mod:`core.phantoms.torso`
(CT, SPECT at 4-168 h, organ masks; label ``"mCRPC"``). The therapy patients do not depend
on the site, so another site rescans only the FDOPA patients; the same seed gives the same
therapy patients, which a second import skips. ``n_drug`` preclinical drug-release studies of
:mod:`core.phantoms.drug_tumour` (free doxorubicin, liposomes, thermosensitive liposomes with
heating, in turn; DCE, VFA, CEST and drug relaxometry MRI; see :mod:`core.phantoms.drug_cohort`)
follow, likewise independent of the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core import config

__all__ = ["demo_dir", "therapy_demo_dir", "drug_demo_dir", "create_demo_cohort", "N_THERAPY", "N_DRUG"]

Progress = Callable[[float, str], None]

#: Therapy patients in the demo cohort.
N_THERAPY = 3
#: Preclinical drug-release studies in the demo cohort (one per scenario).
N_DRUG = 3


def demo_dir(seed: int, site: str) -> Path:
    """Where generated demo files live before import: ``<data>/demo/site-<S>-seed-<N>``."""
    return config.data_dir() / "demo" / f"site-{site}-seed-{seed}"


def therapy_demo_dir(seed: int) -> Path:
    """Where generated therapy demo files live before import: ``<data>/demo/therapy-seed-<N>``."""
    return config.data_dir() / "demo" / f"therapy-seed-{seed}"


def drug_demo_dir(seed: int) -> Path:
    """Where generated drug-release demo files live before import: ``<data>/demo/drug-seed-<N>``."""
    return config.data_dir() / "demo" / f"drug-seed-{seed}"


def create_demo_cohort(repo, *, n: int = 20, seed: int = 0, site: str = "A", n_therapy: int = N_THERAPY,
                       n_drug: int = N_DRUG, progress: Progress | None = None) -> list[int]:
    """Generate ``n`` FDOPA patients, ``n_therapy`` therapy patients and ``n_drug`` drug studies; import them.

    Each part takes its share of the progress bar (by count), half generation and half
    import. Returns the study ids of the imported cases (FDOPA, therapy, drug). Files are
    generated into :func:`demo_dir`, :func:`therapy_demo_dir` and :func:`drug_demo_dir` and
    then copied into the content-addressed store by the import.
    """
    from core.phantoms import generate_cohort
    from core.phantoms.drug_cohort import generate_drug_demo
    from core.phantoms.torso import generate_therapy_cohort

    total = max(int(n) + int(n_therapy) + int(n_drug), 1)

    def part(offset: float, width: float):
        if progress is None:
            return None
        return lambda fraction, message: progress(offset + width * fraction, message)

    share = int(n) / total
    manifest = Path(generate_cohort(demo_dir(seed, site), n=n, seed=seed, site=site, progress=part(0.0, share / 2)))
    if manifest.is_dir():
        manifest = manifest / "cohort.json"
    ids = repo.import_cohort(manifest, progress=part(share / 2, share / 2))
    done = share
    if int(n_therapy) > 0:
        width = int(n_therapy) / total
        therapy = generate_therapy_cohort(therapy_demo_dir(seed), n=int(n_therapy), seed=seed, site=site,
                                          progress=part(done, width / 2))
        ids += repo.import_cohort(therapy, progress=part(done + width / 2, width / 2))
        done += width
    if int(n_drug) > 0:
        width = int(n_drug) / total
        drug = generate_drug_demo(drug_demo_dir(seed), n=int(n_drug), seed=seed, progress=part(done, width / 2))
        ids += repo.import_cohort(drug, progress=part(done + width / 2, width / 2))
    return ids
