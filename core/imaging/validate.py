"""Checks at the imaging boundary: every reader passes its result through :func:`check_volume`.

A check either returns its input unchanged or raises a subclass of
:class:`core.errors.InputError` whose message names the file, says what is wrong in
numbers (how many voxels, which frame, both grids) and what to do about it.

=======================================  ==========================================
problem                                  error
=======================================  ==========================================
NaN or infinite voxels                   :class:`~core.errors.InvalidVoxelError`
zero, negative or non-finite voxel size  :class:`~core.errors.GeometryError`
singular or non-finite affine            :class:`~core.errors.GeometryError`
4D data without frame timing             :class:`~core.errors.TimingError`
frame count differs from timing length   :class:`~core.errors.TimingError`
frame starts not increasing, overlaps    :class:`~core.errors.TimingError`
non-positive frame durations             :class:`~core.errors.TimingError`
two grids differ                         :class:`~core.errors.GeometryError`
empty, non-binary or off-grid mask       :class:`~core.errors.MaskError`
=======================================  ==========================================
"""

from __future__ import annotations

import numpy as np

from core.errors import GeometryError, InvalidVoxelError, MaskError, TimingError
from core.imaging.volume import DynamicVolume, Volume

__all__ = ["check_volume", "check_timing", "check_same_grid", "check_mask",
           "GRID_ATOL_MM", "FRAME_OVERLAP_TOL_S"]

#: Two affines closer than this (element-wise, mm) describe the same grid.
GRID_ATOL_MM = 1e-3
#: Frames may overlap by this much (s) before it counts as an overlap (DICOM ms rounding).
FRAME_OVERLAP_TOL_S = 1e-2

_TIMING_FIX = ("Add a PET-BIDS sidecar (same name, .json) with FrameTimesStart and "
               "FrameDuration in seconds, one value per frame, or re-export the dynamic series.")


def _fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _fmt_affine(affine) -> str:
    rows = np.asarray(affine, dtype=float)
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in rows) + "]"


def _check_geometry(affine, path) -> None:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise GeometryError(f"the voxel-to-scanner matrix has shape {affine.shape}, not 4x4", path=path,
                            fix="Re-export the image; its header geometry is damaged.")
    if not np.all(np.isfinite(affine)):
        raise GeometryError(f"the voxel-to-scanner matrix (affine) holds NaN or infinite values: "
                            f"{_fmt_affine(affine)}", path=path,
                            fix="Re-export the image; its header geometry is damaged.")
    spacing_mm = np.linalg.norm(affine[:3, :3], axis=0)
    bad = [f"{'ijk'[i]}" for i in range(3) if not spacing_mm[i] > 0]
    if bad:
        sizes = " x ".join(f"{s:g}" for s in spacing_mm)
        raise GeometryError(
            f"voxel size is zero along axis {', '.join(bad)} (voxel size {sizes} mm)", path=path,
            fix="Re-export the image with its real voxel size (NIfTI pixdim/sform, DICOM PixelSpacing "
                "and slice positions).")
    linear = affine[:3, :3] / spacing_mm
    if abs(np.linalg.det(linear)) < 1e-6:
        raise GeometryError(
            f"the voxel-to-scanner matrix (affine) is singular, so voxel positions in mm are undefined: "
            f"{_fmt_affine(affine)}", path=path,
            fix="Re-export the image; its orientation (NIfTI sform/qform, DICOM ImageOrientationPatient) "
                "is broken.")


def check_timing(frame_start_s, frame_duration_s, n_frames: int, path=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate frame timing for ``n_frames`` frames and return it as float arrays.

    Parameters
    ----------
    frame_start_s, frame_duration_s : array-like of shape (n_frames,)
        Frame start times (s from the time reference) and durations (s).
    n_frames : int
        Number of frames in the image data.
    path : str or PathLike, optional
        File the timing came from, for the message.

    Raises
    ------
    TimingError
        Missing timing, length mismatch, non-finite values, start times that do not
        increase, overlapping frames or non-positive durations.
    """
    start = np.atleast_1d(np.asarray(frame_start_s if frame_start_s is not None else [], dtype=float))
    dur = np.atleast_1d(np.asarray(frame_duration_s if frame_duration_s is not None else [], dtype=float))
    if start.size == 0:
        raise TimingError(f"the image has {n_frames} frames but no frame timing", path=path, fix=_TIMING_FIX)
    if start.size != n_frames or dur.size != n_frames:
        raise TimingError(
            f"the image has {n_frames} frames but the timing lists {start.size} frame start(s) and "
            f"{dur.size} duration(s)", path=path,
            fix="Give one FrameTimesStart and one FrameDuration value per frame (PET-BIDS), "
                "or re-export the series with all its frames.")
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(dur))):
        raise TimingError("frame timing holds NaN or infinite values", path=path, fix=_TIMING_FIX)
    nonpos = np.flatnonzero(dur <= 0)
    if nonpos.size:
        i = int(nonpos[0])
        raise TimingError(
            f"frame {i + 1} has a duration of {dur[i]:g} s ({nonpos.size} frame(s) with zero or negative "
            f"duration); durations must be positive", path=path,
            fix="Correct FrameDuration in the sidecar (seconds), or re-export the series.")
    back = np.flatnonzero(np.diff(start) <= 0)
    if back.size:
        i = int(back[0])
        raise TimingError(
            f"frame start times do not increase: frame {i + 2} starts at {start[i + 1]:g} s, not after "
            f"frame {i + 1} at {start[i]:g} s", path=path,
            fix="List FrameTimesStart in acquisition order (seconds), or re-export the series.")
    end = start + dur
    over = np.flatnonzero(start[1:] < end[:-1] - FRAME_OVERLAP_TOL_S)
    if over.size:
        i = int(over[0])
        raise TimingError(
            f"frames overlap: frame {i + 1} ({start[i]:g}-{end[i]:g} s) runs past the start of frame "
            f"{i + 2} at {start[i + 1]:g} s", path=path,
            fix="Check FrameTimesStart and FrameDuration (both in seconds, not minutes or ms).")
    return start, dur


def check_volume(vol: Volume, path=None) -> Volume:
    """Validate a freshly read image and return it unchanged.

    Parameters
    ----------
    vol : Volume or DynamicVolume
        The image as a reader built it.
    path : str or PathLike, optional
        File or folder it came from (default: ``vol.source``); leads every message.

    Returns
    -------
    Volume or DynamicVolume
        ``vol`` itself.

    Raises
    ------
    GeometryError
        Wrong dimensionality, empty axes, zero or non-finite voxel size, a singular or
        non-finite affine.
    TimingError
        A 4D image without timing, or timing that :func:`check_timing` rejects.
    InvalidVoxelError
        NaN or infinite voxel values (the message gives how many).

    Examples
    --------
    >>> import numpy as np
    >>> from core.imaging.volume import Volume
    >>> v = check_volume(Volume(np.zeros((4, 4, 2), np.float32), np.eye(4), "MR"))
    """
    path = path if path is not None else vol.source
    data = np.asarray(vol.data)
    if isinstance(vol, DynamicVolume):
        if data.ndim != 4:
            raise GeometryError(f"a dynamic image needs 4D data, this one is {data.ndim}D "
                                f"({_fmt_shape(data.shape)})", path=path,
                                fix="Re-export the dynamic series with all its frames.")
    elif data.ndim == 4:
        raise TimingError(f"4D image ({_fmt_shape(data.shape)}) has no frame timing", path=path,
                          fix=_TIMING_FIX)
    elif data.ndim != 3:
        raise GeometryError(f"expected a 3D image, this one is {data.ndim}D ({_fmt_shape(data.shape)})",
                            path=path, fix="Export the scan as a 3D volume (NIfTI or a DICOM series).")
    if min(data.shape) == 0:
        raise GeometryError(f"the image is empty (shape {_fmt_shape(data.shape)})", path=path,
                            fix="Re-export the image; no voxels were found.")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool) or np.iscomplexobj(data):
        raise InvalidVoxelError(f"voxel values have type {data.dtype}, not real numbers", path=path,
                                fix="Export magnitude images as real numbers (float or integer).")
    _check_geometry(vol.affine, path)
    if isinstance(vol, DynamicVolume):
        check_timing(vol.frame_start_s, vol.frame_duration_s, data.shape[-1], path)
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(data)))
            raise InvalidVoxelError(
                f"{n_bad} of {data.size} voxels are not finite numbers ({n_nan} NaN, {n_bad - n_nan} "
                f"infinite)", path=path,
                fix="Re-export the image from the scanner or reconstruction software; TheraBoard does not "
                    "guess missing voxel values.")
    return vol


def check_same_grid(a: Volume, b: Volume, names: tuple[str, str] = ("image", "mask"), *,
                    path=None, atol_mm: float = GRID_ATOL_MM, error=GeometryError) -> None:
    """Raise unless ``a`` and ``b`` lie on the same voxel grid (shape and affine).

    Parameters
    ----------
    a, b : Volume
        The two images; only the first three axes of the shape are compared.
    names : (str, str), default=("image", "mask")
        What to call them in the message.
    path : str or PathLike, optional
        File to name (default: ``b.source`` or ``a.source``).
    atol_mm : float, default=1e-3
        Largest element-wise difference between the affines, mm.
    error : type, default=GeometryError
        The :class:`~core.errors.InputError` subclass to raise.

    Raises
    ------
    GeometryError
        With both shapes and both affines printed.
    """
    path = path if path is not None else (b.source or a.source)
    sa, sb = tuple(a.data.shape[:3]), tuple(b.data.shape[:3])
    same = sa == sb and np.allclose(np.asarray(a.affine, float), np.asarray(b.affine, float),
                                    rtol=0, atol=atol_mm)
    if not same:
        raise error(
            f"{names[0]} and {names[1]} are not on the same grid: {names[0]} shape {_fmt_shape(sa)}, "
            f"affine {_fmt_affine(a.affine)}; {names[1]} shape {_fmt_shape(sb)}, affine {_fmt_affine(b.affine)}",
            path=path,
            fix=f"Resample the {names[1]} onto the {names[0]} grid (core.imaging.resample.resample_to; "
                f"interpolation='nearest' for masks) or export both from the same study.")


def check_mask(mask: Volume | np.ndarray, image: Volume, *, path=None) -> Volume:
    """Validate a binary mask drawn on ``image`` and return it with boolean data.

    Parameters
    ----------
    mask : Volume or ndarray of shape (I, J, K)
        Mask; an array is taken to lie on ``image``'s grid (its shape must match).
    image : Volume
        The image the mask belongs to.
    path : str or PathLike, optional
        Mask file to name (default: ``mask.source``).

    Returns
    -------
    Volume
        ``modality="SEG"``, ``units="label"``, boolean data, on ``image``'s grid.

    Raises
    ------
    MaskError
        When the grids differ, the mask holds values other than 0 and 1, or no voxel is set.
    """
    if not isinstance(mask, Volume):
        mask = Volume(np.asarray(mask), image.affine, "SEG", "label")
    path = path if path is not None else (mask.source or image.source)
    data = np.asarray(mask.data)
    if data.ndim != 3:
        raise MaskError(f"a mask must be 3D, this one is {data.ndim}D ({_fmt_shape(data.shape)})", path=path,
                        fix="Export the mask as a single 3D label image.")
    check_same_grid(image, mask, ("image", "mask"), path=path, error=MaskError)
    if data.dtype != bool:
        if not np.issubdtype(data.dtype, np.number):
            raise MaskError(f"mask values have type {data.dtype}", path=path, fix="Export the mask as 0/1 integers.")
        values = np.unique(data)
        extra = values[(values != 0) & (values != 1)]
        if extra.size:
            shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
            raise MaskError(
                f"the mask is not binary: it holds the values {shown} (a label map or a probability map?)",
                path=path,
                fix="Export a 0/1 mask, or select one label (for example mask == 2) or threshold "
                    "a probability map before importing.")
        data = data == 1
    if not data.any():
        raise MaskError("the mask is empty: no voxel is set", path=path,
                        fix="Draw or export the region again; an empty mask cannot be analysed.")
    return mask.with_data(data, modality="SEG", units="label")

