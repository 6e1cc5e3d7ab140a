"""The demo cohort in the case store: the synthetic FDOPA cohort and the therapy patients, imported.

Used by ``make run`` on an empty store (through ``python -m core init --demo-if-empty``)
and by the worklist's "Generate demo cohort" button, so that both do exactly the same
thing. Besides the ``n`` FDOPA glioma patients of :mod:`core.phantoms.brain_fdopa`, the
cohort holds ``n_therapy`` [177Lu]Lu-PSMA-617 therapy patients of :mod:`core.phantoms.torso`
(CT, SPECT at 4-168 h, organ masks; label ``"mCRPC"``). The therapy patients do not depend
on the site, so another site rescans only the FDOPA patients; the same seed gives the same
therapy patients, which a second import skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core import config

__all__ = ["demo_dir", "therapy_demo_dir", "create_demo_cohort", "N_THERAPY"]

Progress = Callable[[float, str], None]

#: Therapy patients in the demo cohort.
N_THERAPY = 3


def demo_dir(seed: int, site: str) -> Path:
    """Where generated demo files live before import: ``<data>/demo/site-<S>-seed-<N>``."""
    return config.data_dir() / "demo" / f"site-{site}-seed-{seed}"


def therapy_demo_dir(seed: int) -> Path:
    """Where generated therapy demo files live before import: ``<data>/demo/therapy-seed-<N>``."""
    return config.data_dir() / "demo" / f"therapy-seed-{seed}"


def create_demo_cohort(repo, *, n: int = 20, seed: int = 0, site: str = "A", n_therapy: int = N_THERAPY,
                       progress: Progress | None = None) -> list[int]:
    """Generate ``n`` FDOPA patients and ``n_therapy`` therapy patients and import them into ``repo``.

    The FDOPA part takes the share ``n / (n + n_therapy)`` of the progress bar, each part
    half generation and half import. Returns the study ids of the imported cases (FDOPA
    first). Files are generated into :func:`demo_dir` and :func:`therapy_demo_dir` and then
    copied into the content-addressed store by the import.
    """
    from core.phantoms import generate_cohort
    from core.phantoms.torso import generate_therapy_cohort

    total = max(int(n) + int(n_therapy), 1)

    def part(offset: float, width: float):
        if progress is None:
            return None
        return lambda fraction, message: progress(offset + width * fraction, message)

    share = int(n) / total
    manifest = Path(generate_cohort(demo_dir(seed, site), n=n, seed=seed, site=site, progress=part(0.0, share / 2)))
    if manifest.is_dir():
        manifest = manifest / "cohort.json"
    ids = repo.import_cohort(manifest, progress=part(share / 2, share / 2))
    if int(n_therapy) > 0:
        therapy = generate_therapy_cohort(therapy_demo_dir(seed), n=int(n_therapy), seed=seed, site=site,
                                          progress=part(share, (1 - share) / 2))
        ids += repo.import_cohort(therapy, progress=part(share + (1 - share) / 2, (1 - share) / 2))
    return ids
