"""Progress reporting on the command line: a tqdm bar driven by ``progress(fraction, message)``.

Engines report progress through a plain callable ``progress(fraction, message)``; pages
hand them ``st.progress``, the command line hands them :func:`tqdm_progress`.
"""

from __future__ import annotations

from tqdm import tqdm

__all__ = ["tqdm_progress"]


def tqdm_progress(desc: str):
    """A tqdm bar in per mille and the ``progress(fraction, message="")`` callable that drives it.

    Examples
    --------
    >>> bar, progress = tqdm_progress("demo")      # doctest: +SKIP
    >>> progress(0.5, "half way"); bar.close()     # doctest: +SKIP
    """
    bar = tqdm(total=1000, desc=desc, unit="‰", leave=True)

    def progress(fraction: float, message: str = "") -> None:
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return bar, progress
