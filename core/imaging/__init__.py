"""Images in and out: :class:`Volume`, :class:`DynamicVolume`, readers, writers, resampling.

One entry point reads any supported input::

    from core.imaging import load
    vol = load("sub-01_pet.nii.gz")      # NIfTI (+ PET-BIDS sidecar), DICOM folder or zip
"""

from core.imaging.volume import DynamicVolume, PetDose, Volume, spacing_from_affine, suv_bw_factor

__all__ = ["Volume", "DynamicVolume", "PetDose", "suv_bw_factor", "spacing_from_affine", "load"]


def load(path, **kwargs):
    """Read a NIfTI file (with its PET-BIDS JSON sidecar), a DICOM folder or a DICOM zip.

    Returns a :class:`Volume` or, for 4D/multi-frame input, a :class:`DynamicVolume`.
    Raises a subclass of :class:`core.errors.InputError` that names the file and the fix.
    """
    from core.imaging.io import load as _load

    return _load(path, **kwargs)
