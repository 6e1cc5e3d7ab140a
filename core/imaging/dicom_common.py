"""Private helpers shared by the DICOM reader and writer (:mod:`core.imaging.dicom_read`,
:mod:`core.imaging.dicom_write`).

DICOM positions and direction cosines are in the patient LPS system (PS3.3 C.7.6.2
*Image Plane Module*); volumes use RAS+ affines as nibabel does. The conversion negates
x and y, and is its own inverse.
"""

from __future__ import annotations

import numpy as np

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
