"""DICOM series (CT, MR, PET; static and dynamic): read from a folder or zip, and write.

Reading follows the DICOM standard, PS3.3 (Information Object Definitions):

* Geometry, C.7.6.2 *Image Plane Module*: ``ImageOrientationPatient`` (IOP) gives the
  direction cosines of a row and of a column, ``ImagePositionPatient`` (IPP) the centre
  of the first voxel, ``PixelSpacing`` = (row spacing, column spacing) in mm, all in the
  patient LPS system. A pixel (row r, column c) of a slice lies at
  ``IPP + c * dc * row_cos + r * dr * col_cos``. Slices are sorted by their position
  along the normal ``row_cos x col_cos``; the voxel array is indexed ``[column, row,
  slice]`` as nibabel does, and the affine is turned into RAS+ by negating x and y.
* Voxel values, C.11.1 *Modality LUT Module* / C.7.6.3: ``value = stored *
  RescaleSlope + RescaleIntercept`` per image (Hounsfield units for CT; per-slice
  slopes for PET).
* PET, C.8.9.1 *PET Series Module* (``Units`` BQML, ``DecayCorrection`` START / ADMIN /
  NONE, ``SeriesType``, ``NumberOfSlices``, ``NumberOfTimeSlices``; Series Date/Time is
  the reference time of all temporal PET attributes), C.8.9.2 *PET Isotope Module*
  (``RadiopharmaceuticalInformationSequence``: ``RadionuclideTotalDose`` in Bq,
  ``RadionuclideHalfLife`` in s, ``RadiopharmaceuticalStartDateTime``), C.8.9.4 *PET
  Image Module* (``FrameReferenceTime`` in ms from the series reference time,
  ``ActualFrameDuration`` in ms, ``ImageIndex``, ``AcquisitionDate/Time`` = start of the
  frame's acquisition).
* SUVbw decay interval (see :mod:`core.imaging.volume`): from injection to the series
  reference time for ``DecayCorrection=START`` (with the QIBA vendor-neutral rule: if the
  series time is later than the earliest acquisition time, the series was post-processed
  and the acquisition time is used); zero for ``ADMIN``.

Dynamic series are grouped into frames by ``ImageIndex`` and ``NumberOfSlices`` (PET), by
``FrameReferenceTime``/``ActualFrameDuration`` or acquisition time otherwise, and by
``TemporalPositionIdentifier`` for MR/CT; frames are ordered by ``FrameReferenceTime``.
Frame starts are seconds from injection (PET) or from ``ContrastBolusStartTime`` /
the first frame (MR, CT).

The writer produces classic single-frame files (one per slice and frame), Explicit VR
Little Endian, with the modules above filled as a scanner would.

This module is the public facade: the reader lives in :mod:`core.imaging.dicom_read`, the
writer in :mod:`core.imaging.dicom_write`, and helpers both need in
:mod:`core.imaging.dicom_common`.
"""

from core.imaging.dicom_read import read_dicom_series
from core.imaging.dicom_write import SOP_CLASS_UIDS, write_dicom_series

__all__ = ["read_dicom_series", "write_dicom_series", "SOP_CLASS_UIDS"]
