"""Pieces of the radiomics cohort page: cached loads, the evaluation panel, per-case SHAP.

Not a page (``app.py`` registers pages explicitly).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import InputError
from core.evaluation import compare_models, model_curves
from core.viz.evaluation import (calibration_figure, comparison_table, decision_curve_figure, model_label, roc_figure,
                                 shap_importance_table, shap_summary_figure, shap_waterfall_figure)

#: Columns of the per-case table besides identifiers (IBSI tags on the static SUV image and the maps).
KEY_FEATURES = {
    "static_stat_max": "SUVmax",
    "static_stat_mean": "SUVmean",
    "static_morph_volume": "Volume (mm³)",
    "static_ih_entropy": "Entropy (SUV histogram)",
    "ttp_stat_median": "TTP median (min)",
    "slope_stat_median": "Slope median (SUV/h)",
}
SPLIT_NAMES = {"internal_test": "Internal test (held-out patients)",
               "external_test": "External test (unseen site)",
               "train": "Training (nested cross-validation)"}


@st.cache_resource(show_spinner="Loading the radiomics baseline…")
def shipped_baseline():
    """The shipped bundle, verified against its model card (cached for the session's server)."""
    from core.radiomics.shipped import load_baseline

    return load_baseline()


@st.cache_data(show_spinner="Computing curves with bootstrap bands…", max_entries=16)
def curves_of(key: str, y: np.ndarray, scores: dict, thresholds: dict | None) -> dict:
    """ROC bands, operating points, reliability and decision curves (cached by ``key``, which names the data)."""
    return model_curves(y, scores, thresholds=thresholds, n_boot=1000)


def evaluation_panel(key: str, y: np.ndarray, scores: dict, table: pd.DataFrame, best: str,
                     thresholds: dict | None = None, note: str = "") -> None:
    """Comparison table, ROC with bands, calibration and decision curves of several models."""
    st.dataframe(table, hide_index=True, key=f"{key}_table")
    if note:
        st.caption(note)
    curves = curves_of(key, y, scores, thresholds)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(roc_figure(curves["roc"], points=curves["points"] or None), key=f"{key}_roc")
        st.caption("ROC curves with pointwise 95 % stratified-bootstrap bands (1000 resamples); legend AUC "
                   "intervals are DeLong's. Markers: the operating threshold.")
    with right:
        st.plotly_chart(calibration_figure(curves["calibration"]), key=f"{key}_calibration")
        st.caption("Reliability: observed fraction with progression per quantile bin of predicted probability, "
                   "Wilson 95 % intervals.")
    st.plotly_chart(decision_curve_figure(curves["decision"]), key=f"{key}_decision")
    st.caption("Decision curve (Vickers & Elkin 2006): net benefit of treating as progression when the "
               "predicted probability exceeds the threshold, against treating all or none.")


def shipped_comparison(baseline, split: str):
    """Labels, scores and the comparison table of the shipped models on one split."""
    y, scores = baseline.split(split)
    results = compare_models(y, scores, baseline.thresholds, baseline.best)
    return y, scores, comparison_table(results, baseline.best)


@st.cache_data(show_spinner="Computing SHAP values…", max_entries=8)
def _shap_of_split(split: str, model: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    b = shipped_baseline()
    rows = b.table[b.table["split"] == split]
    e = b.explain(rows, model)
    return e.values, b.shap_inputs(rows, model), list(e.feature_names)


def shap_summary(baseline, split: str) -> None:
    """SHAP beeswarm and importance table of the selected model on a split."""
    values, inputs, names = _shap_of_split(split, baseline.best)
    st.plotly_chart(shap_summary_figure(values, inputs, names), key=f"shap_summary_{split}")
    st.caption(f"SHAP values of {model_label(baseline.best)} (interventional, training-set background; "
               "Lundberg & Lee 2017). Colour: the feature's value after imputation and z-scoring.")
    with st.expander("Mean |SHAP| per feature"):
        st.dataframe(shap_importance_table(values, names), hide_index=True)


def case_rows(baseline, table: pd.DataFrame) -> pd.DataFrame:
    """Per-case table: identifiers, the model's probability and call, key features."""
    out = table[["patient_id", "site", "label"]].rename(
        columns={"patient_id": "Case", "site": "Site", "label": "Reference"}).copy()
    try:
        pred = baseline.predict(table)
        out["P(progression)"] = pred["probability"].round(3)
        out["Model call"] = pred["call"]
    except InputError:
        out["Model call"] = "n/a (other feature settings)"
    for col, name in KEY_FEATURES.items():
        if col in table.columns:
            out[name] = table[col].astype(float).round(3)
    return out


def case_waterfall(baseline, table: pd.DataFrame, study_id: int) -> None:
    """The selected model's SHAP waterfall for one case of the store."""
    row = table.loc[[study_id]]
    e = baseline.explain(row)
    inputs = baseline.shap_inputs(row)
    p = baseline.predict(row).iloc[0]
    st.metric(f"{model_label(baseline.best)}: P(progression)", f"{p['probability']:.2f}",
              help=f"Call at the training threshold {p['threshold']:.2f}: {p['call']}.")
    st.plotly_chart(shap_waterfall_figure(e.values[0], inputs[0], list(e.feature_names), e.base_value,
                                          output=e.output), key="case_waterfall")
    st.caption(f"Contributions on the {e.output} scale, from the mean over training cases E[f(x)] to this "
               "case's output f(x). Feature values are z-scores.")
