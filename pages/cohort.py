"""Radiomics cohort: per-case features, the shipped baseline and its held-out tests, and a
nested cross-validated comparison of the baseline models on the cases in the store."""

import streamlit as st

from core.errors import InputError
from core.radiomics.cohort import ID_COLUMNS
from core.radiomics.cases import (evaluate_store_cohort, find_store_evaluation, labelled, load_store_evaluation,
                                  store_feature_table)
from core.viz.evaluation import comparison_table, model_label
from pages._cohort_parts import (SPLIT_NAMES, case_rows, case_waterfall, evaluation_panel, shap_summary,
                                 shipped_baseline, shipped_comparison)
from pages._shared import repository, show_input_error

st.title("Radiomics cohort")
repo = repository()
try:
    baseline = shipped_baseline()
except InputError as err:
    show_input_error(err)
    st.stop()
# the radiomics cohort is of PET studies (the therapy patients' SPECT/CT belong to the dosimetry page)
cases = {c.study_id: c for c in repo.list_cases() if {"dynamic_pet", "static_pet"} & set(c.roles)}
table, missing = store_feature_table(repo, list(cases), compute=False)  # stored features only: instant
cases_tab, store_tab, shipped_tab = st.tabs(["Cases", "Compare models on these cases", "Shipped baseline"])

with cases_tab:
    if not cases:
        st.info("No PET study yet: import images or generate the demo cohort on the Worklist.")
    else:
        todo = [sid for sid, why in missing.items() if why == "not computed yet"]
        if todo and st.button(f"Compute radiomics of {len(todo)} case(s) (about 6 s each)", key="compute",
                              type="primary"):
            bar = st.progress(0.0)
            store_feature_table(repo, list(cases), progress=lambda f, m: bar.progress(f, m))
            st.rerun()  # draw the page from the stored results
        elif todo:
            st.caption(f"{len(todo)} case(s) have no stored radiomics yet.")
        for sid, why in missing.items():
            if why != "not computed yet":
                st.warning(f"{cases[sid].pseudonym}: {why}", icon=":material/warning:")
        if len(table):
            st.dataframe(case_rows(baseline, table), hide_index=True, key="case_table")
            n_features = table.shape[1] - len(ID_COLUMNS)
            st.caption(f"{len(table)} cases · {n_features} IBSI features each (static SUV, TTP and slope "
                       f"maps). Model: {model_label(baseline.best)} from the shipped baseline, call at its "
                       f"training threshold {baseline.thresholds[baseline.best]:.2f}.")
            st.download_button("All features (CSV)", table.to_csv().encode(), "radiomics_features.csv", "text/csv",
                               key="features_csv")
            if set(baseline.features) <= set(table.columns):
                chosen = st.selectbox("Explain the model's output for a case", list(table.index), key="explain_case",
                                      format_func=lambda s: cases[s].pseudonym)
                try:
                    case_waterfall(baseline, table, chosen)
                except InputError as err:
                    show_input_error(err)
            else:
                st.info("These cases' features were not computed with the shipped model's settings (see its model "
                        "card), so the model gives no probability or explanation for them.", icon=":material/info:")

with store_tab:
    rows, y = labelled(table) if len(table) else (None, [])
    st.write(f"Nested cross-validation (5 outer x 3 inner folds, stratified) of logistic regression, random "
             f"forest and gradient boosting on the {len(y)} labelled cases with stored radiomics.")
    n_sites = rows["site"].nunique() if rows is not None and len(rows) else 0
    harmonise = st.checkbox("Harmonise features across sites (ComBat, inside each training fold)", key="harmonise",
                            disabled=n_sites < 2, help="Needs at least two sites with 4 or more cases each.")
    record = None
    try:
        record = (find_store_evaluation(repo, table, harmonise=harmonise) if rows is not None and len(rows)
                  else None)
    except InputError as err:  # too few labelled cases: say what is needed, nothing is wrong
        st.info(str(err), icon=":material/info:")
    else:
        if record is None and rows is not None and len(rows) and st.button(
                "Run the comparison", key="run_store_eval", type="primary"):
            try:
                bar = st.progress(0.0)
                record = evaluate_store_cohort(repo, table, harmonise=harmonise,
                                               progress=lambda f, m: bar.progress(f, m))
                bar.empty()
            except InputError as err:
                show_input_error(err)
    if record is not None:
        data = load_store_evaluation(repo, record)
        summary = record.summary
        st.caption(f"Stored result {record.id} · {record.created:%Y-%m-%d %H:%M} UTC · code {record.code_version} · "
                   f"{summary['n_progression']} progression / {summary['n_radionecrosis']} radionecrosis")
        evaluation_panel(f"store{record.id}", data["y"], data["scores"],
                         comparison_table(summary["models"], summary["best"]), summary["best"],
                         note="Out-of-fold metrics at each model's 0.5 probability cut (balanced class weights); "
                              "DeLong p against the model with the highest out-of-fold AUC, which is chosen on "
                              "the same scores, so the p-values are descriptive.")

with shipped_tab:
    card = baseline.card
    st.subheader(card.title)
    st.caption(f"Trained {card.created} · code {card.code_version} · selected: {model_label(baseline.best)} · "
               f"threshold {baseline.thresholds[baseline.best]:.2f} (Youden, nested out-of-fold training scores)")
    st.warning(card.limitations[0], icon=":material/science:")
    splits = [s for s in ("internal_test", "external_test", "train") if s in baseline.evaluation["splits"]]
    split = st.radio("Evaluated on", splits, format_func=SPLIT_NAMES.get, horizontal=True, key="split")
    y, scores, shipped_table = shipped_comparison(baseline, split)
    evaluation_panel(f"shipped_{split}", y, scores, shipped_table, baseline.best, baseline.thresholds,
                     note=f"{len(y)} patients ({int(y.sum())} progression). Metrics at each model's training "
                          f"threshold; DeLong p against {model_label(baseline.best)}, selected on training data "
                          "before the test sets were scored.")
    if split != "train":
        shap_summary(baseline, split)
    with st.expander("Model card"):
        from core.learning.model_card import render_markdown

        st.markdown(render_markdown(card))
