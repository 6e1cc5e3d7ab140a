"""Panels of the drug-release page: perfusion and pH, release rate, drug over time, distance from vessels,
scenarios, inverse. Every number comes from the stored record; figures from core.viz.drug_release."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.drug_release.case import INVERSE_NAMES, load_drug_release
from core.drug_release.release import RELEASE_LAWS
from core.viz.drug_release import (better_method, drug_curves_figure, fixed_range, inverse_ratio_figure,
                                   inverse_table, inverse_timing_table, maps_figure, masked_maps, profile_figure,
                                   scenario_figure, scenario_table, tumour_mean_curves, tumour_statistics)
from pages._shared import repository

#: The equation of each release-law kind (core.drug_release.release), for the caption.
_LAW_FORMS = {
    "free": "free drug: nothing to release",
    "constant": "first-order release at a constant rate, dC_E/dt = −k_rel·C_E",
    "ph_hill": "k_rel(pH) = k_min + (k_max − k_min) / (1 + 10^(n·(pH − pH50))), a Hill switch in acid",
    "temperature_logistic": "k_rel(T) = k_low + (k_high − k_low) / (1 + exp(−(T − Tm)/w)), a logistic switch "
                            "under mild hyperthermia",
}


@st.cache_resource(max_entries=4)
def drug_release_of(db_url: str, result_id: int):
    """A stored drug-release Result, loaded once per session set (read-only arrays)."""
    repo = repository()
    return load_drug_release(repo, repo.get_result(result_id))




def perfusion_panel(case) -> None:
    maps = masked_maps(case)
    st.plotly_chart(maps_figure(maps, case.spacing_um, tumour=case.tumour,
                                colorscales={"ph": "RdYlBu"}), key="perfusion_maps")
    st.dataframe(tumour_statistics(maps, case.tumour).round(4), key="perfusion_table")
    failed = int(np.sum(case.tumour & ~case.fit_ok)), int(np.sum(case.tumour & ~case.ph_ok))
    st.caption(f"Ktrans, ve and vp from an extended Tofts fit of the DCE-MRI curves; pH from a ratiometric CEST "
               f"measurement and its calibration curve. Transparent pixels: failed fit ({failed[0]} tumour voxels) "
               f"or pH outside the calibrated range ({failed[1]} tumour voxels). White line: tumour; table: "
               f"tumour median and interquartile range.")


def release_panel(case) -> None:
    law = RELEASE_LAWS.get(case.summary.get("release_law"))
    if "release_per_h" not in case.maps or (law is not None and law.kind == "free"):
        st.info("Free doxorubicin: the drug is not encapsulated, so there is no release rate to map.")
        return
    st.plotly_chart(maps_figure({"release_per_h": case.maps["release_per_h"]}, case.spacing_um,
                                tumour=case.tumour, log=["release_per_h"], colorscales={"release_per_h": "Magma"},
                                height=460), key="release_map")
    text = "Release rate of the encapsulated drug (1/h, log colour scale) at the measured pH/temperature"
    if law is not None:
        text += f". Law: {law.description} {_LAW_FORMS.get(law.kind, '')}"
        parameters = case.summary.get("release_parameters")
        if parameters:
            text += " (" + ", ".join(f"{k} = {float(v):.3g}" for k, v in parameters.items()) + ")"
    st.caption(text + " (core.drug_release.release).")


def drug_time_panel(case) -> None:
    times = [float(t) for t in case.times_h]
    shown = st.select_slider("Time after injection", times, value=times[-1], format_func=lambda t: f"{t:g} h",
                             key="time_h")
    i = times.index(shown)
    ranges = {"carrier": fixed_range(case.carrier_uM), "free": fixed_range(case.free_uM)}
    st.plotly_chart(maps_figure({"carrier": case.carrier_uM[i], "free": case.free_uM[i]}, case.spacing_um,
                                tumour=case.tumour, ranges=ranges, units={"carrier": "µM", "free": "µM"},
                                titles={"carrier": f"encapsulated drug, {shown:g} h",
                                        "free": f"free drug, {shown:g} h"},
                                colorscales={"carrier": "Blues", "free": "Hot"}), key="drug_maps")
    curves = tumour_mean_curves(case.times_h, {"encapsulated": case.carrier_uM, "free": case.free_uM}, case.tumour)
    st.plotly_chart(drug_curves_figure(curves, current_h=shown), key="drug_curves")
    used = case.summary.get("inverse_used")
    basis = (f"with the {INVERSE_NAMES.get(used, used)} estimates" if used else "with the library's default "
             "transport parameters (no inverse estimate)")
    st.caption(f"Predicted {basis}: extravasated encapsulated drug and free drug, µM per tissue volume; the "
               f"colour range is fixed over all {len(times)} times (encapsulated 0-{ranges['carrier'][1]:.3g} µM, free "
               f"0-{ranges['free'][1]:.3g} µM) so the frames compare.")


def distance_panel(case) -> None:
    p = case.profile
    st.plotly_chart(profile_figure(p), key="profile")
    penetration = p.get("penetration_um")
    if penetration is not None and np.isfinite(penetration):
        st.metric("Penetration distance of free drug (model)",
                  f"{float(penetration):.0f} µm")
    if "window_auc_uM_h" in p:
        st.plotly_chart(maps_figure({"exposure_uM_h": p["window_auc_uM_h"]}, p["spacing_um"],
                                    vessels=p.get("window_vessels"), length_unit="µm", colorscales={
                                        "exposure_uM_h": "Hot"}, titles={"exposure_uM_h": "free-drug AUC, "
                                                                         "micro-window"}, height=460),
                        key="window_map")
    st.caption("Free-drug exposure (AUC, µM·h) in a tissue window simulated at micrometre resolution, binned by "
               "distance from the nearest vessel (hover: pixels per bin); cyan: vessels. Primeau et al. 2005 "
               "(Clin Cancer Res 11:8782) saw doxorubicin fluorescence fall off within about 50 µm of vessels.")


def scenarios_panel(case) -> None:
    if not case.scenarios:
        st.info("No scenario comparison in this result.")
        return
    st.plotly_chart(scenario_figure(case.scenarios, case.summary["threshold_uM_h"]), key="scenario_bars")
    st.dataframe(scenario_table(case.scenarios).round(3), key="scenario_table")
    st.caption("Lethal fraction: share of tumour voxels (voxel scale) or window pixels (micro-window) whose "
               "free-drug AUC reaches the threshold; each scenario is the same tumour under another carrier, "
               "trigger or interstitial pressure.")


def inverse_panel(case) -> None:
    if not case.inverse:
        st.info(case.summary.get("inverse_note") or "The inverse problem was not run for this result.")
        return
    truth = case.truth
    st.dataframe(inverse_table(case.inverse, truth, INVERSE_NAMES), key="inverse_table")
    if truth:
        st.plotly_chart(inverse_ratio_figure(case.inverse, truth, INVERSE_NAMES), key="inverse_ratio")
    st.dataframe(inverse_timing_table(case.inverse, INVERSE_NAMES), key="inverse_timing")
    best, medians = better_method(case.inverse, truth)
    if not truth:
        st.caption("No known truth for this study: the estimates are shown with their standard deviations only.")
    elif best is None:
        st.caption("No method is better here: " + (", ".join(
            f"{INVERSE_NAMES.get(m, m)} median |relative error| {100 * e:.1f} %" for m, e in medians.items())
            or "fewer than two methods converged with a truth to compare") + ".")
    else:
        others = ", ".join(f"{INVERSE_NAMES.get(m, m)} {100 * e:.1f} %" for m, e in medians.items() if m != best)
        wall = {m: r.get("wall_s") for m, r in case.inverse.items()}
        fastest = min((m for m in wall if wall[m] is not None), key=wall.get, default=None)
        st.caption(f"More accurate here: {INVERSE_NAMES.get(best, best)} (median |relative error| "
                   f"{100 * medians[best]:.1f} % against {others})"
                   + (f"; faster: {INVERSE_NAMES.get(fastest, fastest)} ({wall[fastest]:.1f} s)." if fastest
                      else ".") + " Error bars: ±2 standard deviations.")
