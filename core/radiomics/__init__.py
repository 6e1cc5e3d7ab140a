"""Radiomics: IBSI 1 features (via mirp) and, later, the classical ML baseline.

See :mod:`core.radiomics.features` (extraction, IBSI tag mapping) and
:mod:`core.radiomics.settings` (processing choices and presets).
"""

from core.radiomics.features import FAMILIES, MIN_ROI_VOXELS, RadiomicsFeatures, extract, ibsi_tag
from core.radiomics.settings import AGGREGATIONS, RadiomicsSettings

__all__ = ["extract", "RadiomicsSettings", "RadiomicsFeatures", "ibsi_tag", "FAMILIES", "AGGREGATIONS",
           "MIN_ROI_VOXELS"]
