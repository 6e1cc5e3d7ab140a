"""Radiomics: IBSI 1 features (via mirp), dynamic radiomics of kinetic maps, and the
classical machine-learning baseline.

See :mod:`core.radiomics.features` (extraction, IBSI tag mapping),
:mod:`core.radiomics.settings` (processing choices and presets),
:mod:`core.radiomics.cohort` (features of a case and of a synthetic training cohort) and
:mod:`core.radiomics.baseline` (filters, selection, models, nested evaluation, SHAP).
"""

from core.radiomics.baseline import (
    MODELS,
    PARAM_GRIDS,
    SELECTION_C,
    CorrelationFilter,
    Explanation,
    VarianceFilter,
    check_feature_table,
    evaluate_models,
    explain,
    make_pipeline,
)
from core.radiomics.cohort import case_features, cohort_feature_table, static_suv_image
from core.radiomics.features import FAMILIES, MIN_ROI_VOXELS, RadiomicsFeatures, extract, ibsi_tag
from core.radiomics.settings import AGGREGATIONS, RadiomicsSettings

__all__ = [
    "extract", "RadiomicsSettings", "RadiomicsFeatures", "ibsi_tag", "FAMILIES", "AGGREGATIONS", "MIN_ROI_VOXELS",
    "case_features", "cohort_feature_table", "static_suv_image",
    "VarianceFilter", "CorrelationFilter", "make_pipeline", "PARAM_GRIDS", "MODELS", "SELECTION_C",
    "check_feature_table", "evaluate_models", "explain", "Explanation",
]
