"""Figures and tables of the drug-release page, on a small hand-built CaseDrugRelease."""

import numpy as np
import pytest

from core.drug_release.case import CaseDrugRelease
from core.viz.drug_release import (PRIMEAU_LABEL, axis_coordinates, better_method, drug_curves_figure, fixed_range,
                                   inverse_ratio_figure, inverse_table, inverse_timing_table, maps_figure,
                                   masked_maps, median_relative_errors, profile_figure, scenario_figure,
                                   scenario_table, tumour_mean_curves, tumour_statistics)


def _case():
    rng = np.random.default_rng(7)
    h, w, t = 6, 8, 4
    tumour = np.zeros((h, w), bool)
    tumour[1:5, 2:7] = True
    fit_ok = np.ones((h, w), bool)
    fit_ok[0, 0] = False
    ph_ok = np.ones((h, w), bool)
    ph_ok[2, 3] = False
    ktrans = rng.uniform(0.05, 0.3, (h, w))
    ktrans[0, 0] = np.nan
    ph = rng.uniform(6.4, 7.2, (h, w))
    ph[2, 3] = np.nan
    times = np.array([0.0, 1.0, 4.0, 24.0])
    carrier = rng.uniform(0, 10, (t, h, w))
    free = rng.uniform(0, 2, (t, h, w))
    free[2, 1, 1] = 9.5
    maps = {"ktrans_per_min": ktrans, "ve": rng.uniform(0.1, 0.5, (h, w)), "vp": rng.uniform(0.01, 0.05, (h, w)),
            "ph": ph, "release_per_h": 10.0 ** rng.uniform(-3, 0, (h, w))}
    profile = {"distance_um": np.array([5.0, 15.0, 25.0, 35.0]), "auc_uM_h": np.array([4.0, 2.5, 1.0, 0.3]),
               "n": np.array([40, 30, 20, 10]), "penetration_um": 23.0, "spacing_um": 2.0,
               "window_auc_uM_h": rng.uniform(0, 3, (5, 5)), "window_vessels": np.eye(5, dtype=bool)}
    scenarios = [{"name": "free", "label": "Free doxorubicin", "lethal_fraction_voxel": 0.2,
                  "lethal_fraction_window": 0.1, "median_auc_uM_h": 0.6, "penetration_um": 20.0},
                 {"name": "tsl", "label": "Thermosensitive liposome, 42 °C", "lethal_fraction_voxel": 0.7,
                  "lethal_fraction_window": 0.55, "median_auc_uM_h": 2.1, "penetration_um": 60.0}]
    inverse = {"classical": {"estimates": {"release_per_h": 0.11, "vascular_pressure_mmhg": 19.0},
                             "std": {"release_per_h": 0.01, "vascular_pressure_mmhg": 0.5}, "wall_s": 3.2,
                             "ok": True, "message": "converged"},
               "pinn": {"estimates": {"release_per_h": 0.08, "vascular_pressure_mmhg": 22.0},
                        "std": {"release_per_h": 0.02, "vascular_pressure_mmhg": 2.0}, "wall_s": 40.0,
                        "ok": True, "message": "done"}}
    truth = {"release_per_h": 0.1, "vascular_pressure_mmhg": 20.0}
    return CaseDrugRelease(maps=maps, fit_ok=fit_ok, ph_ok=ph_ok, tumour=tumour, vessels=np.eye(h, w, dtype=bool),
                           spacing_um=250.0, times_h=times, carrier_uM=carrier, free_uM=free, profile=profile,
                           scenarios=scenarios, inverse=inverse, truth=truth, summary={})


def test_maps_are_heatmaps_in_mm_with_nan_kept_and_the_tumour_outlined():
    case = _case()
    fig = maps_figure(masked_maps(case), case.spacing_um, tumour=case.tumour)
    assert [t.type for t in fig.data] == ["heatmap", "contour"] * 4
    ktrans = np.asarray(fig.data[0].z, float)
    assert np.isnan(ktrans[0, 0]) and np.isfinite(np.delete(ktrans.ravel(), 0)).all()
    ph = np.asarray(fig.data[6].z, float)
    assert np.isnan(ph[2, 3]) and np.isnan(ph).sum() == 1
    np.testing.assert_allclose(fig.data[0].x, 0.25 * np.arange(8))          # 250 µm pixels -> mm
    np.testing.assert_allclose(fig.data[0].y, 0.25 * np.arange(6))
    np.testing.assert_array_equal(np.asarray(fig.data[1].z), case.tumour.astype(float))
    assert fig.layout.yaxis4.scaleanchor == "x4" and fig.layout.xaxis.title.text == "mm"
    assert [a.text for a in fig.layout.annotations] == ["Ktrans", "ve", "vp", "pH"]


def test_masked_maps_follow_the_flags_even_when_the_engine_left_a_value():
    case = _case()
    case.maps["ve"][0, 0] = 0.3                       # a value where fit_ok is False
    assert np.isnan(masked_maps(case)["ve"][0, 0]) and case.maps["ve"][0, 0] == 0.3   # input untouched


def test_log_colour_scale_shows_log10_with_decade_ticks_and_real_values_in_hover():
    case = _case()
    rate = case.maps["release_per_h"]
    fig = maps_figure({"release_per_h": rate}, case.spacing_um, log=["release_per_h"])
    np.testing.assert_allclose(fig.data[0].z, np.log10(rate))
    np.testing.assert_allclose(fig.data[0].customdata, rate)
    ticks = np.asarray(fig.data[0].colorbar.tickvals)
    assert ticks.min() <= np.log10(rate.min()) and ticks.max() >= np.log10(rate.max())
    assert np.all(np.diff(ticks) == 1)


def test_micro_window_axes_in_um_with_vessels_outlined():
    p = _case().profile
    fig = maps_figure({"exposure_uM_h": p["window_auc_uM_h"]}, p["spacing_um"], vessels=p["window_vessels"],
                      length_unit="µm")
    np.testing.assert_allclose(fig.data[0].x, 2.0 * np.arange(5))
    assert fig.data[1].type == "contour" and fig.layout.xaxis.title.text == "µm"


def test_drug_maps_share_a_fixed_colour_range_over_all_times():
    case = _case()
    lo, hi = fixed_range(case.free_uM)
    assert (lo, hi) == (0.0, 9.5)
    fig = maps_figure({"free": case.free_uM[0]}, case.spacing_um, ranges={"free": (lo, hi)})
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 9.5)      # frame 0 has no 9.5: range is global
    assert fixed_range(np.full((2, 2), np.nan)) == (0.0, 1.0)


def test_tumour_curves_are_tumour_means_and_the_current_time_is_marked():
    case = _case()
    curves = tumour_mean_curves(case.times_h, {"carrier": case.carrier_uM, "free": case.free_uM}, case.tumour)
    np.testing.assert_allclose(curves["free"], [f[case.tumour].mean() for f in case.free_uM])
    fig = drug_curves_figure(curves, current_h=4.0)
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    assert fig.layout.shapes[0].x0 == 4.0 and fig.layout.shapes[0].line.dash == "dash"


def test_tumour_statistics_are_median_and_iqr_of_finite_tumour_voxels():
    case = _case()
    table = tumour_statistics(masked_maps(case), case.tumour)
    v = case.maps["ph"][case.tumour]
    v = v[np.isfinite(v)]
    assert table.loc["pH", "valid voxels"] == 19 and table.loc["pH", "tumour voxels"] == 20
    np.testing.assert_allclose(table.loc["pH", ["Q1", "median", "Q3"]].to_numpy(float),
                               np.percentile(v, [25, 50, 75]))
    assert table.loc["Ktrans", "unit"] == "1/min"


def test_profile_has_bars_with_counts_the_50_um_line_and_the_penetration_distance():
    p = _case().profile
    fig = profile_figure(p)
    assert fig.data[0].type == "bar"
    np.testing.assert_array_equal(fig.data[0].y, p["auc_uM_h"])
    np.testing.assert_array_equal(fig.data[0].customdata, p["n"])
    lines = {(s.x0, s.line.dash) for s in fig.layout.shapes}
    assert (50.0, "dash") in lines and (23.0, "dot") in lines
    texts = [a.text for a in fig.layout.annotations]
    assert PRIMEAU_LABEL in texts and any("23 µm" in t for t in texts)


def test_scenario_bars_equal_the_inputs_and_the_title_has_the_threshold():
    case = _case()
    fig = scenario_figure(case.scenarios, 1.5)
    assert [t.type for t in fig.data] == ["bar", "bar"] and fig.layout.barmode == "group"
    assert list(fig.data[0].y) == [0.2, 0.7] and list(fig.data[1].y) == [0.1, 0.55]
    assert list(fig.data[0].x) == ["Free doxorubicin", "Thermosensitive liposome, 42 °C"]
    assert "1.5 µM·h" in fig.layout.title.text
    table = scenario_table(case.scenarios)
    assert table.loc["Free doxorubicin", "median AUC (µM·h)"] == 0.6
    assert table.loc["Thermosensitive liposome, 42 °C", "penetration (µm)"] == 60.0


def test_inverse_table_and_two_sigma_error_bars_on_the_ratio_to_truth():
    case = _case()
    names = {"classical": "Classical", "pinn": "I-PINN"}
    table = inverse_table(case.inverse, case.truth, names)
    row = table.loc["release rate (1/h)"]
    assert row["truth"] == 0.1 and row["I-PINN estimate"] == 0.08 and row["I-PINN std"] == 0.02
    assert row["Classical rel. error"] == pytest.approx(0.1) and row["I-PINN rel. error"] == pytest.approx(-0.2)
    fig = inverse_ratio_figure(case.inverse, case.truth, names)
    pinn = fig.data[1]
    np.testing.assert_allclose(pinn.y, [0.8, 1.1])
    np.testing.assert_allclose(pinn.error_y.array, [2 * 0.02 / 0.1, 2 * 2.0 / 20.0])
    assert fig.layout.shapes[0].y0 == 1.0
    assert inverse_timing_table(case.inverse, names).loc["I-PINN", "wall time (s)"] == 40.0


def test_the_better_method_follows_the_numbers():
    case = _case()
    medians = median_relative_errors(case.inverse, case.truth)
    assert medians["classical"] == pytest.approx(np.median([0.1, 0.05]))
    assert medians["pinn"] == pytest.approx(np.median([0.2, 0.1]))
    assert better_method(case.inverse, case.truth)[0] == "classical"
    case.inverse["pinn"]["estimates"] = {"release_per_h": 0.1, "vascular_pressure_mmhg": 20.1}
    assert better_method(case.inverse, case.truth)[0] == "pinn"
    case.inverse["pinn"]["ok"] = False                # a failed run is not crowned
    assert better_method(case.inverse, case.truth)[0] is None
    assert better_method(case.inverse, None) == (None, {})


def test_inverse_table_without_truth_has_no_truth_or_error_columns():
    case = _case()
    table = inverse_table(case.inverse, None)
    assert "truth" not in table and not [c for c in table if "error" in c]
    assert axis_coordinates(3, 250.0).tolist() == [0.0, 0.25, 0.5]
