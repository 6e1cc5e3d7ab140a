"""Panels of the dosimetry page: fits, dose map, DVHs, organ table with limits, cycle planner, comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.dosimetry.case import METHOD_NAMES, effective_half_life_h, load_dosimetry
from core.dosimetry.dvh import dose_volume_histogram
from core.dosimetry.gamma import gamma_index
from core.dosimetry.radiobiology import ORGAN_RADIOBIOLOGY, plan_cycles, radiobiology_key
from core.viz.dosimetry import dose_slice_figure, difference_slice_figure, dvh_figure, tac_fit_figure
from pages._shared import repository

@st.cache_resource(max_entries=4)
def dosimetry_of(db_url: str, result_id: int):
    """A stored dosimetry Result, loaded once per session set (read-only arrays)."""
    repo = repository()
    return load_dosimetry(repo, repo.get_result(result_id))


def organ_table(dosimetry, method: str) -> pd.DataFrame:
    table = pd.DataFrame(dosimetry.summary["organ_tables"][method])
    return table.rename(columns={"index": "structure"}).set_index("structure") if "index" in table else \
        table.set_index(table.columns[0])


def fits_panel(dosimetry) -> None:
    s = dosimetry.summary
    st.plotly_chart(tac_fit_figure(s["times_h"], s["fits"]), key="tac_fits")
    rows = [{"structure": name, "model (AICc)": fit.get("model") or "—",
             "TIA (MBq h)": fit.get("tia_mbq_h"), "R²": fit.get("r2"),
             "T_eff (h)": effective_half_life_h(fit), "note": fit.get("note") or fit.get("error", "")}
            for name, fit in s["fits"].items()]
    st.dataframe(pd.DataFrame(rows).set_index("structure").round(3), key="fit_table")
    st.caption("Organ totals of the SPECT at each scan time, fitted by mono-, bi- and tri-exponentials bounded by "
               "physical decay; the model is chosen by AICc. The voxel maps use trapezoids with a mono-exponential "
               "tail (core.dosimetry.tia).")


def dose_map_panel(dosimetry, method: str) -> None:
    dose = dosimetry.doses_gy[method]
    plane = st.radio("Plane", ["axial", "coronal", "sagittal"], horizontal=True, key="plane")
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    hottest = np.unravel_index(int(np.argmax(dose)), dose.shape)
    index = st.slider("Slice", 0, dose.shape[axis] - 1, int(hottest[axis]), key=f"slice_{plane}")
    top = float(np.percentile(dose[dose > 0], 99.9)) if np.any(dose > 0) else 1.0
    st.plotly_chart(dose_slice_figure(dosimetry.ct_hu, dose, plane, index, dosimetry.voxel_mm, dose_max=top,
                                      title=f"{METHOD_NAMES[method]}: absorbed dose over CT"), key="dose_map")
    st.caption(f"Isodose lines at 10, 25, 50, 75 and 90 % of {top:.3g} Gy (the 99.9th percentile).")
    if method == "mc" and dosimetry.mc_uncertainty is not None:
        mask = dose > 0.5 * dose.max()
        st.caption(f"Monte Carlo statistical uncertainty (1 σ) in voxels above half the maximum: median "
                   f"{100 * float(np.median(dosimetry.mc_uncertainty[mask])):.1f} %.")


def dvh_panel(dosimetry, method: str) -> None:
    dose = dosimetry.doses_gy[method]
    dvhs = {name: dose_volume_histogram(dose, dosimetry.labels == k, voxel_mm=dosimetry.voxel_mm)
            for k, name in dosimetry.label_names.items() if np.any(dosimetry.labels == k) and name != "bone"}
    st.plotly_chart(dvh_figure(dvhs), key="dvh")


def organ_limits_panel(dosimetry, method: str) -> None:
    table = organ_table(dosimetry, method)
    rows, keys = [], set()
    for name, row in table.iterrows():
        key = radiobiology_key(name)
        p = ORGAN_RADIOBIOLOGY.get(key) if key else None
        if p is not None and p.limit_gy is not None:
            keys.add(key)
        limit = "" if p is None or p.limit_gy is None else f"{p.limit_quantity} {p.limit_gy:g} Gy"
        rows.append({"structure": name, "mass (g)": row["mass_g"], "mean (Gy)": row["mean_gy"],
                     "max (Gy)": row["max_gy"], "D2 (Gy)": row["D2_gy"], "D98 (Gy)": row["D98_gy"],
                     "limit (cumulative)": limit})
    st.dataframe(pd.DataFrame(rows).set_index("structure").round(3), key="organ_table")
    with st.expander("Where the limits come from"):
        for key in sorted(keys):
            st.markdown(f"**{key.replace('_', ' ')}**: " + "; ".join(ORGAN_RADIOBIOLOGY[key].sources))


def cycle_planner_panel(dosimetry, method: str) -> None:
    table = organ_table(dosimetry, method)
    fits = dosimetry.summary["fits"]
    organs = {n: radiobiology_key(n) for n in table.index}
    organs = {n: k for n, k in organs.items() if k and ORGAN_RADIOBIOLOGY[k].limit_gy is not None}
    if not organs:
        st.info("None of the organs with a published limit (kidneys, salivary glands, liver, lungs) is delineated.")
        return
    left, right = st.columns(2)
    n_cycles = left.number_input("Cycles planned", 1, 12, 6, key="cycles")
    high_risk = right.checkbox("Kidney risk factors (hypertension, diabetes): BED limit 28 Gy", key="high_risk")
    dose = {k: float(table.loc[n, "mean_gy"]) for n, k in organs.items()}
    t_eff = {k: effective_half_life_h(fits.get(n, {})) for n, k in organs.items()}
    missing = [k for k, t in t_eff.items() if t is None]
    if missing:
        st.warning(f"No time-activity fit for {', '.join(missing)}: not planned.")
        dose = {k: d for k, d in dose.items() if k not in missing}
        t_eff = {k: t for k, t in t_eff.items() if k not in missing}
        if not dose:
            return
    plan = plan_cycles(dose, int(n_cycles), effective_half_life_h=t_eff, high_risk=high_risk)
    summary = pd.DataFrame([{"organ": o.replace("_", " "), "dose per cycle (Gy)": dose[o], "T_eff (h)": t_eff[o],
                             "cycles within the limit": plan.cycles_allowed[o],
                             "limit first exceeded at cycle": plan.first_exceeding_cycle[o]}
                            for o in dose]).set_index("organ")
    for column in ("cycles within the limit", "limit first exceeded at cycle"):
        summary[column] = summary[column].astype("Int64")             # None: no limit, or not reached
    st.dataframe(summary.round(2), key="cycle_summary")
    st.caption("Every cycle is assumed to repeat this cycle's absorbed doses; BED by the Lea-Catcheside factor of a "
               "mono-exponential clearance with the organ's effective half-life; no repair between cycles is "
               "credited for late-responding organs (core.dosimetry.radiobiology).")
    with st.expander("Per-cycle cumulative doses"):
        st.dataframe(plan.table.round(3), key="cycle_table")


def comparison_panel(dosimetry) -> None:
    methods = list(dosimetry.doses_gy)
    s = dosimetry.summary
    timing = pd.DataFrame([{"method": METHOD_NAMES[m], "computing time (s)": s["timings_s"].get(m)}
                           for m in methods] + [{"method": METHOD_NAMES[m], "computing time (s)": None,
                                                 "note": why} for m, why in s["notes"].items() if m not in methods])
    st.dataframe(timing.set_index("method"), key="timings")
    if "mc" not in methods:
        st.info("The comparison needs the Monte Carlo reference: compute it with the Monte Carlo selected.")
        return
    ref = organ_table(dosimetry, "mc")["mean_gy"]
    errors = pd.DataFrame({METHOD_NAMES[m]: 100.0 * (organ_table(dosimetry, m)["mean_gy"] - ref) / ref
                           for m in methods if m != "mc"})
    st.markdown("**Organ mean dose against the Monte Carlo (%)**")
    st.dataframe(errors.round(2), key="organ_errors")
    others = [m for m in methods if m != "mc"]
    if not others:
        return
    other = st.radio("Compare with the Monte Carlo", others, format_func=METHOD_NAMES.get, horizontal=True,
                     key="compare_method")
    plane = st.session_state.get("plane", "axial")
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    index = st.session_state.get(f"slice_{plane}", dosimetry.doses_gy["mc"].shape[axis] // 2)
    st.plotly_chart(difference_slice_figure(dosimetry.doses_gy["mc"], dosimetry.doses_gy[other], plane, index,
                                            dosimetry.voxel_mm, title=f"{METHOD_NAMES[other]} − Monte Carlo"),
                    key="difference_map")
    gamma = _gamma(dosimetry.result_id, other)
    st.metric(f"Gamma pass rate, 3 %/3 mm (global, above 10 % of the maximum), {METHOD_NAMES[other]} vs MC",
              f"{100 * gamma:.1f} %")


@st.cache_data(max_entries=16, show_spinner="Gamma index…")
def _gamma(result_id: int, method: str) -> float:
    repo = repository()
    d = dosimetry_of(repo.url, result_id)
    return float(gamma_index(d.doses_gy["mc"], d.doses_gy[method], d.voxel_mm, max_points=20_000).pass_rate)
