"""Errors that tell a physician what is wrong with their input and how to fix it.

Every problem with user input raises a subclass of :class:`InputError` (itself a
``ValueError``). The message always names the file, says what is wrong and what to
do, in that order, so that a page can show it as it is.
"""

from __future__ import annotations

import os

__all__ = [
    "InputError",
    "UnreadableFileError",
    "UnsupportedFormatError",
    "TimingError",
    "InvalidVoxelError",
    "GeometryError",
    "DicomSeriesError",
    "MaskError",
    "CaseStoreError",
]


class InputError(ValueError):
    """A problem with the user's input.

    Parameters
    ----------
    problem : str
        What is wrong, in words a physician understands.
    path : str or os.PathLike, optional
        The file or folder at fault; it leads the message.
    fix : str, optional
        What the user can do about it.

    Examples
    --------
    >>> err = InputError("4D image has no frame timing", path="pet.nii.gz",
    ...                  fix="Add a PET-BIDS sidecar pet.json with FrameTimesStart and FrameDuration.")
    >>> str(err)
    'pet.nii.gz: 4D image has no frame timing. Add a PET-BIDS sidecar pet.json with FrameTimesStart and FrameDuration.'
    """

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None, fix: str | None = None):
        self.problem = problem.rstrip(".")
        self.path = os.fspath(path) if path is not None else None
        self.fix = fix
        parts = [f"{self.path}: {self.problem}." if self.path else f"{self.problem}."]
        if fix:
            parts.append(fix)
        super().__init__(" ".join(parts))


class UnreadableFileError(InputError):
    """The file is corrupt, truncated or not an image at all."""


class UnsupportedFormatError(InputError):
    """The file is readable but not in a format TheraBoard imports."""


class TimingError(InputError):
    """Frame timing is missing, inconsistent with the data, or not monotonic."""


class InvalidVoxelError(InputError):
    """The image holds NaN or infinite values."""


class GeometryError(InputError):
    """Spacing, orientation or grid is invalid, or two grids do not match."""


class DicomSeriesError(InputError):
    """A DICOM series is mixed, incomplete or unevenly spaced."""


class MaskError(InputError):
    """A mask is empty, not binary, or does not match its image."""


class CaseStoreError(InputError):
    """An import into the case store was refused (for example a duplicate)."""
