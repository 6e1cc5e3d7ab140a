"""DICOM series (CT, MR, PET; static and dynamic): read from a folder or zip, and write.

The public facade of DICOM I/O. The reader, with the PS3.3 modules it follows (image
plane geometry, modality LUT, PET series / isotope / image modules, the SUV decay
interval), lives in :mod:`core.imaging.dicom_read`; the writer, which fills the same
modules as a scanner would, in :mod:`core.imaging.dicom_write`; helpers both need in
:mod:`core.imaging.dicom_common`.
"""

from core.imaging.dicom_read import read_dicom_series
from core.imaging.dicom_write import SOP_CLASS_UIDS, write_dicom_series

__all__ = ["read_dicom_series", "write_dicom_series", "SOP_CLASS_UIDS"]
