"""The demo cohort in the case store: generate the synthetic FDOPA cohort and import it.

Used by ``python -m core demo --import``, by ``make run`` on an empty store (through
``python -m core init --demo-if-empty``) and by the worklist's "Generate demo cohort"
button, so that all three do exactly the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core import config

__all__ = ["demo_dir", "create_demo_cohort"]

Progress = Callable[[float, str], None]


def demo_dir(seed: int, site: str) -> Path:
    """Where generated demo files live before import: ``<data>/demo/site-<S>-seed-<N>``."""
    return config.data_dir() / "demo" / f"site-{site}-seed-{seed}"


def create_demo_cohort(repo, *, n: int = 20, seed: int = 0, site: str = "A",
                       progress: Progress | None = None) -> list[int]:
    """Generate ``n`` synthetic patients and import them into ``repo``.

    Generation takes the first half of the progress bar, import the second. Returns the
    study ids of the imported cases. Files are generated into :func:`demo_dir` and then
    copied into the content-addressed store by the import.
    """
    from core.phantoms import generate_cohort

    def part(offset: float):
        if progress is None:
            return None
        return lambda fraction, message: progress(offset + 0.5 * fraction, message)

    out = demo_dir(seed, site)
    manifest = Path(generate_cohort(out, n=n, seed=seed, site=site, progress=part(0.0)))
    if manifest.is_dir():
        manifest = manifest / "cohort.json"
    return repo.import_cohort(manifest, progress=part(0.5))
