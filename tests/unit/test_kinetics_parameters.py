"""Guideline parameters against hand calculations, brute-force loops and published cut-offs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import InputError, InvalidVoxelError, MaskError, TimingError
from core.imaging.volume import DynamicVolume, PetDose
from core.kinetics.parameters import (FDOPA, FET, PATTERN_DECREASING, PATTERN_INCREASING, PATTERN_NAMES,
                                      PATTERN_PLATEAU, PATTERN_UNDETERMINED, PROTOCOLS, Cutoff, curve_pattern,
                                      dynamic_parameters, early_late_ratio, late_slope, parametric_maps,
                                      protocol_for, reading, static_parameters, time_to_peak, window_mean)

# An FDOPA-like schedule with uneven frames (min): 6 x 0.5, 4 x 1.75, 5 x 4 = 0-30 min.
FS = np.concatenate([np.arange(0, 3, 0.5), 3 + np.arange(4) * 1.75, 10 + np.arange(5) * 4.0])
FE = np.concatenate([FS[1:], [30.0]])
MID = 0.5 * (FS + FE)


# ----------------------------------------------------------------------- protocols


@pytest.mark.parametrize("name", ["18F-FDOPA", "FDOPA", "fluorodopa", "[18F]FDOPA", "F-DOPA", "18F-DOPA",
                                  "6-[18F]fluoro-L-DOPA", " fdopa "])
def test_protocol_for_fdopa_names(name):
    assert protocol_for(name) is FDOPA


@pytest.mark.parametrize("name", ["FET", "18F-FET", "[18F]FET", "fet", "O-(2-[18F]fluoroethyl)-L-tyrosine"])
def test_protocol_for_fet_names(name):
    assert protocol_for(name) is FET


@pytest.mark.parametrize("name", ["MET", "FDG", "11C-methionine", "", None])
def test_protocol_for_unknown_raises_with_fix(name):
    with pytest.raises(InputError) as err:
        protocol_for(name)
    assert "FDOPA" in str(err.value) and "FET" in str(err.value)
    assert err.value.fix


def test_protocols_windows_and_thresholds():
    assert FET.static_window_min == (20.0, 40.0) and FET.btv_tbr_threshold == 1.6
    assert FDOPA.static_window_min == (10.0, 30.0) and FDOPA.btv_tbr_threshold == 2.0
    assert set(PROTOCOLS) == {"FDOPA", "FET"}
    for proto in PROTOCOLS.values():
        assert proto.cutoffs and proto.pattern_reference
        for c in proto.cutoffs:
            assert c.source and c.short and c.meaning and c.positive and c.negative
        assert all(len(row) == 3 and all(row) for row in proto.sources)
    # the published cut-offs the brief asks for
    fet = {(c.parameter, c.threshold) for c in FET.cutoffs}
    assert {("tbr_max", 2.3), ("tbr_mean", 2.0), ("ttp_min", 45.0)} <= fet
    assert ("ttp_min", 5.4) in {(c.parameter, c.threshold) for c in FDOPA.cutoffs}


def test_cutoff_direction():
    up = Cutoff("tbr_max", 2.0, ">=", "m", "s")
    down = Cutoff("ttp_min", 45.0, "<", "m", "s")
    assert up.is_positive(2.0) and not up.is_positive(1.99)
    assert down.is_positive(44.9) and not down.is_positive(45.0)
    with pytest.raises(InputError):
        Cutoff("tbr_max", 2.0, ">", "m", "s")


# ----------------------------------------------------------------------- curve functions


def test_window_mean_by_hand():
    values = np.arange(FS.size, dtype=float) ** 2
    # frames wholly inside 2-10 min: [2,2.5], [2.5,3], [3,4.75], [4.75,6.5], [6.5,8.25], [8.25,10]
    sel = (FS >= 2) & (FE <= 10)
    expected = sum((FE[i] - FS[i]) * values[i] for i in np.flatnonzero(sel)) / 8.0
    assert window_mean(values, FS, FE, (2.0, 10.0)) == pytest.approx(expected, rel=1e-12)
    # a frame straddling the window edge is left out: 2.2-10 keeps [2.5,3] onwards
    expected2 = sum((FE[i] - FS[i]) * values[i] for i in np.flatnonzero((FS >= 2.5) & (FE <= 10))) / 7.5
    assert window_mean(values, FS, FE, (2.2, 10.0)) == pytest.approx(expected2, rel=1e-12)


def test_window_mean_broadcasts():
    rng = np.random.default_rng(1)
    values = rng.random((3, 4, FS.size))
    got = window_mean(values, FS, FE, (10.0, 30.0))
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert got[i, j] == pytest.approx(float(window_mean(values[i, j], FS, FE, (10.0, 30.0))), rel=1e-12)


@pytest.mark.parametrize("a, b", [(0.7, 2.0), (-0.05, 3.0), (0.0, 1.5)])
def test_linear_ramp_has_slope_a(a, b):
    values = a * MID + b  # per minute
    assert late_slope(values, FS, FE, (10.0, 30.0), per="min") == pytest.approx(a, abs=1e-12)
    assert late_slope(values, FS, FE, (0.0, 30.0), per="h") == pytest.approx(60.0 * a, abs=1e-10)


def test_slope_matches_polyfit_on_noisy_curves():
    rng = np.random.default_rng(2)
    values = rng.normal(2.0, 0.3, (5, FS.size))
    sel = (FS >= 10) & (FE <= 30)
    got = late_slope(values, FS, FE, (10.0, 30.0))
    for i in range(5):
        assert got[i] == pytest.approx(60.0 * np.polyfit(MID[sel], values[i, sel], 1)[0], rel=1e-10)


def test_time_to_peak_known_frame_and_ties():
    values = np.ones(FS.size)
    values[7] = 5.0
    assert time_to_peak(values, FS, FE) == pytest.approx(MID[7])
    values[11] = 5.0  # a tie: the first maximum
    assert time_to_peak(values, FS, FE) == pytest.approx(MID[7])
    batch = np.stack([values, np.arange(FS.size, dtype=float)])
    np.testing.assert_allclose(time_to_peak(batch, FS, FE), [MID[7], MID[-1]])


def test_early_late_ratio_by_hand():
    values = np.where(FE <= 10, 3.0, 1.5)
    assert early_late_ratio(values, FS, FE, (3.0, 10.0), (10.0, 30.0)) == pytest.approx(2.0)
    zero_late = np.where(FE <= 10, 3.0, 0.0)
    assert np.isnan(early_late_ratio(zero_late, FS, FE, (3.0, 10.0), (10.0, 30.0)))


def test_curve_pattern_thresholds():
    tau = FDOPA.pattern_slope_per_h
    sel = (FS >= 10) & (FE <= 30)
    mean_mid = MID[sel] @ (FE - FS)[sel] / 20.0

    def curve(rel_per_h):  # C = 1 + r (t - t_mean)/60: slope/mean = r per hour
        return 1.0 + rel_per_h * (MID - mean_mid) / 60.0

    codes = curve_pattern(np.stack([curve(2 * tau), curve(0.9 * tau), curve(-0.9 * tau), curve(-2 * tau)]),
                          FS, FE, FDOPA)
    assert codes.tolist() == [PATTERN_INCREASING, PATTERN_PLATEAU, PATTERN_PLATEAU, PATTERN_DECREASING]
    assert int(curve_pattern(np.zeros(FS.size), FS, FE, "FDOPA")) == PATTERN_UNDETERMINED
    assert PATTERN_NAMES[PATTERN_DECREASING] == "decreasing"


def test_dynamic_parameters_of_a_washout_curve():
    values = 2.0 * np.exp(-MID / 15.0) * (1 - np.exp(-MID / 0.3))
    p = dynamic_parameters(values, FS, FE, "FDOPA")
    assert float(p["ttp_min"]) == pytest.approx(MID[int(np.argmax(values))])
    assert int(p["pattern"]) == PATTERN_DECREASING and bool(p["ok"])
    assert float(p["slope_per_h"]) == pytest.approx(float(late_slope(values, FS, FE, (10, 30))))
    assert float(p["relative_slope_per_h"]) == pytest.approx(
        float(p["slope_per_h"]) / float(window_mean(values, FS, FE, (10, 30))))
    assert float(p["early_late_ratio"]) > 1.0
    assert float(p["scan_end_min"]) == 30.0


# ----------------------------------------------------------------------- bad input


def test_nan_values_raise():
    values = np.ones(FS.size)
    values[3] = np.nan
    with pytest.raises(InvalidVoxelError, match="NaN"):
        window_mean(values, FS, FE, (10.0, 30.0))
    with pytest.raises(InvalidVoxelError):
        dynamic_parameters(values, FS, FE, "FDOPA")


def test_frames_out_of_order_raise():
    fs, fe = FS.copy(), FE.copy()
    fs[[3, 4]] = fs[[4, 3]]
    fe[[3, 4]] = fe[[4, 3]]  # frames listed as 0, 0.5, 1, 2, 1.5, ... min
    with pytest.raises(TimingError, match="out of order: frame 5 starts at 1.5 min"):
        time_to_peak(np.ones(FS.size), fs, fe)


@pytest.mark.parametrize("fs, fe, words", [
    ([0.0, 1.0, 0.5], [1.0, 2.0, 3.0], "out of order"),
    ([0.0, 1.0], [1.5, 2.0], "overlap"),
    ([0.0, 1.0], [1.0, 1.0], "end after"),
    ([-1.0, 1.0], [1.0, 2.0], "injection"),
    ([0.0, np.nan], [1.0, 2.0], "NaN"),
])
def test_bad_frame_times_raise(fs, fe, words):
    with pytest.raises(TimingError, match=words):
        window_mean(np.ones(len(fs)), fs, fe, (0.0, 3.0))


def test_window_outside_scan_names_window_and_span():
    with pytest.raises(TimingError) as err:
        window_mean(np.ones(FS.size), FS, FE, (30.0, 40.0), name="FET static")
    msg = str(err.value)
    assert "FET static window 30-40 min" in msg and "0-30 min" in msg
    with pytest.raises(TimingError, match="20-40 min"):
        dynamic_parameters(np.ones(10), FS[:10], FE[:10], "FET")  # a 10 min scan has no FET static window


def test_length_mismatch_and_short_slope_window_raise():
    with pytest.raises(TimingError, match="15 frames"):
        window_mean(np.ones(FS.size - 1), FS, FE, (10.0, 30.0))
    with pytest.raises(TimingError, match="at least two frames"):
        late_slope(np.ones(FS.size), FS, FE, (26.0, 30.0))
    with pytest.raises(InputError):
        late_slope(np.ones(FS.size), FS, FE, (10.0, 30.0), per="s")


# ----------------------------------------------------------------------- static parameters

SHAPE = (20, 20, 12)
SPACING = (2.0, 2.0, 3.0)
AFFINE = np.diag([*SPACING, 1.0])
AFFINE[:3, 3] = (-20.0, 10.0, 5.0)
PET_FS_S = np.array([0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0])  # 6 x 5 min
VOXEL_ML = 2.0 * 2.0 * 3.0 / 1000.0


def _dose():
    return PetDose(injected_activity_bq=200e6, body_weight_kg=80.0, half_life_s=6586.2, decay_interval_s=0.0)


def _handmade(dose=True):
    """Background 1000 Bq/ml; tumour block 3000 with one 4500 voxel; extra hot spots for the BTV."""
    static = np.full(SHAPE, 1000.0)
    tumour = np.zeros(SHAPE, bool)
    tumour[8:12, 8:12, 5:8] = True
    static[tumour] = 3000.0
    static[9, 10, 6] = 4500.0
    static[12:14, 8:12, 5:8] = 2500.0      # hot, touches the tumour, inside the 10 mm margin (2 x 2 mm)
    static[15, 15, 6] = 5000.0              # hot, inside the margin but not connected: excluded
    static[8:12, 8:12, 8:12] = 2200.0       # hot, connected, 3-12 mm above (3 mm slices): 3 of 4 slices in margin
    background = np.zeros(SHAPE, bool)
    background[0:5, 0:5, 0:4] = True
    background[2, 2, 2] = True
    curve = np.array([0.5, 0.8, 0.85, 0.95, 1.05, 1.15])  # mean over the 10-30 min frames = 1.0
    data = (static[..., None] * curve).astype(np.float32)
    pet = DynamicVolume(data, AFFINE, "PT", "Bq/ml", dose=_dose() if dose else None, source="pet.nii.gz",
                        frame_start_s=PET_FS_S, frame_duration_s=np.full(PET_FS_S.size, 300.0))
    return pet, static, tumour, background


def _sphere_mean_brute(static, centre, radius_mm):
    idx = np.indices(static.shape).reshape(3, -1).T
    d = np.linalg.norm((idx - centre) * np.asarray(SPACING), axis=1)
    return static.reshape(-1)[d <= radius_mm + 1e-9].mean()


def test_static_parameters_hand_made_volume():
    pet, static, tumour, background = _handmade()
    p = static_parameters(pet, tumour, background, "FDOPA")
    k = pet.suv_factor
    assert p["unit"] == "SUV" and p["suv_unavailable_reason"] is None
    assert p["suv_max"] == pytest.approx(4500.0 * k, rel=1e-6)
    assert p["suv_mean"] == pytest.approx((3000.0 * 47 + 4500.0) / 48 * k, rel=1e-6)
    assert p["background_mean"] == pytest.approx(1000.0 * k, rel=1e-6)
    assert p["tbr_max"] == pytest.approx(4.5, rel=1e-6)
    assert p["tbr_mean"] == pytest.approx((3000.0 * 47 + 4500.0) / 48 / 1000.0, rel=1e-6)
    radius = (3.0 * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    peak = max(_sphere_mean_brute(static, c, radius) for c in np.argwhere(tumour))
    assert p["suv_peak"] == pytest.approx(peak * k, rel=1e-6)
    assert p["tbr_peak"] == pytest.approx(peak / 1000.0, rel=1e-6)
    # BTV (TBR >= 2): tumour 48 + touching block 24 + the connected layer slices k = 8, 9, 10 (3 x 16);
    # the isolated 5000 voxel and the slice k = 11 (12 mm away) are left out
    assert p["btv_ml"] == pytest.approx((48 + 24 + 48) * VOXEL_ML)
    assert p["btv_mask"].data[15, 15, 6] == 0 and p["btv_mask"].data[9, 9, 11] == 0
    assert p["tumour_volume_ml"] == pytest.approx(48 * VOXEL_ML)


def test_btv_threshold_and_margin_options():
    pet, _, tumour, background = _handmade()
    wide = static_parameters(pet, tumour, background, "FDOPA", btv_margin_mm=12.0)
    assert wide["btv_ml"] == pytest.approx((48 + 24 + 64) * VOXEL_ML)
    strict = static_parameters(pet, tumour, background, "FDOPA", btv_threshold=2.8)
    assert strict["btv_ml"] == pytest.approx(48 * VOXEL_ML)
    # FET: the frames lying in 20-40 min (20-30 min here) are used, and reported
    fet = static_parameters(pet, tumour, background, "FET", btv_margin_mm=0.0)
    assert fet["btv_ml"] == pytest.approx(48 * VOXEL_ML) and fet["btv_threshold"] == 1.6
    assert fet["static_frames_min"] == pytest.approx((20.0, 30.0))
    assert fet["uptake_max"] == pytest.approx(4500.0 * 1.1 * pet.suv_factor, rel=1e-6)


def test_without_dose_values_are_in_bq_per_ml_and_tbrs_unchanged():
    pet, _, tumour, background = _handmade(dose=False)
    p = static_parameters(pet, tumour, background, "FDOPA")
    q = static_parameters(_handmade()[0], tumour, background, "FDOPA")
    assert p["unit"] == "Bq/ml" and "suv_max" not in p and p["suv_unavailable_reason"]
    assert p["uptake_max"] == pytest.approx(4500.0, rel=1e-6)
    for key in ("tbr_max", "tbr_mean", "tbr_peak", "btv_ml"):
        assert p[key] == pytest.approx(q[key], rel=1e-6)


def test_static_parameters_bad_input():
    pet, static, tumour, background = _handmade()
    with pytest.raises(MaskError, match="empty"):
        static_parameters(pet, np.zeros(SHAPE, bool), background, "FDOPA")
    with pytest.raises(MaskError, match="overlaps"):
        static_parameters(pet, tumour, tumour | background, "FDOPA")
    with pytest.raises(MaskError, match="not binary"):
        static_parameters(pet, tumour.astype(np.uint8) * 2, background, "FDOPA")
    with pytest.raises(TimingError, match="dynamic"):
        static_parameters(pet.frame(0), tumour, background, "FDOPA")
    early = DynamicVolume(pet.data[..., :3], AFFINE, "PT", "Bq/ml", dose=_dose(),
                          frame_start_s=PET_FS_S[:3], frame_duration_s=np.full(3, 300.0))  # 0-15 min
    with pytest.raises(TimingError, match="20-40 min"):
        static_parameters(early, tumour, background, "FET")
    cold = pet.with_data(np.where(background[..., None], 0.0, pet.data).astype(np.float32))
    with pytest.raises(InputError, match="background"):
        static_parameters(cold, tumour, background, "FDOPA")
    bad = pet.data.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidVoxelError):
        static_parameters(pet.with_data(bad), tumour, background, "FDOPA")
    with pytest.raises(InputError):
        static_parameters(pet, tumour, background, "MET")


# ----------------------------------------------------------------------- maps


def test_parametric_maps_equal_roi_functions_voxel_by_voxel():
    rng = np.random.default_rng(3)
    fs_s = np.concatenate([np.arange(0, 120, 20.0), np.arange(120, 600, 60.0), np.arange(600, 1800, 240.0)])
    dur = np.diff(np.concatenate([fs_s, [1800.0]]))
    data = rng.gamma(4.0, 500.0, (6, 5, 4, fs_s.size)).astype(np.float32)
    pet = DynamicVolume(data, AFFINE, "PT", "Bq/ml", dose=_dose(), frame_start_s=fs_s, frame_duration_s=dur)
    region = np.zeros((6, 5, 4), bool)
    region[1:5, 1:4, :3] = True
    maps = parametric_maps(pet, region, 0.9, "FDOPA")
    k = pet.suv_factor
    fs, fe = pet.frame_start_min, pet.frame_end_min
    for ijk in np.argwhere(region):
        tac = data[tuple(ijk)].astype(float) * k
        i = tuple(ijk)
        assert maps["static"].data[i] == pytest.approx(float(window_mean(tac, fs, fe, (10, 30))), rel=1e-5)
        assert maps["tbr"].data[i] == pytest.approx(float(window_mean(tac, fs, fe, (10, 30))) / 0.9, rel=1e-5)
        assert maps["ttp_min"].data[i] == pytest.approx(float(time_to_peak(tac, fs, fe)), rel=1e-6)
        assert maps["slope_per_h"].data[i] == pytest.approx(float(late_slope(tac, fs, fe, (10, 30))), rel=1e-4,
                                                            abs=1e-6)
        assert maps["pattern"].data[i] == int(curve_pattern(tac, fs, fe, "FDOPA"))
    outside = ~region
    for name in ("static", "tbr", "ttp_min", "slope_per_h"):
        assert np.all(np.isnan(maps[name].data[outside]))
    assert np.all(maps["pattern"].data[outside] == 0)
    assert maps["static"].units == "SUV" and maps["slope_per_h"].units == "SUV/h" and maps["ttp_min"].units == "min"
    np.testing.assert_allclose(maps["static"].affine, AFFINE)
    with pytest.raises(InputError):
        parametric_maps(pet, region, 0.0, "FDOPA")
    with pytest.raises(MaskError):
        parametric_maps(pet, np.zeros((6, 5, 4), bool), 1.0, "FDOPA")


# ----------------------------------------------------------------------- reading


def test_reading_fet_lines_have_sources_and_sides():
    params = {"tbr_max": 2.6, "tbr_mean": 1.8, "ttp_min": 17.5, "scan_end_min": 50.0, "pattern": PATTERN_DECREASING,
              "relative_slope_per_h": -0.6, "suv_max": 3.0}
    lines = reading(params, "FET")
    by = {(r.parameter, r.cutoff.threshold if r.cutoff else None): r for r in lines}
    assert set(by) == {("tbr_max", 2.3), ("tbr_mean", 2.0), ("ttp_min", 45.0), ("pattern", None)}
    assert "TBRmax 2.6 is above the 2.3 cut-off" in by["tbr_max", 2.3].text
    assert "in favour of early tumour progression" in by["tbr_max", 2.3].text
    assert "below the 2 cut-off" in by["tbr_mean", 2.0].text
    assert "in favour of treatment-related changes" in by["tbr_mean", 2.0].text
    assert "below the 45 min cut-off" in by["ttp_min", 45.0].text
    assert "in favour of tumour progression or recurrence" in by["ttp_min", 45.0].text
    assert "decreasing" in by["pattern", None].text and "-60 %" in by["pattern", None].text
    for r in lines:
        assert r.source and r.text.rstrip().endswith((")", ".")) and "(" in r.text


def test_reading_ttp_cutoff_beyond_scan_end_is_not_applied():
    lines = reading({"ttp_min": 37.5, "scan_end_min": 40.0}, FET)
    assert len(lines) == 1 and "cannot be compared" in lines[0].text and "ends at 40 min" in lines[0].text


def test_reading_fdopa_and_missing_values():
    lines = reading({"tbr_max": 1.5, "ttp_min": 8.0, "tbr_mean": float("nan")}, "18F-FDOPA")
    texts = [r.text for r in lines]
    assert len(lines) == 3  # TBRmax (Herrmann), TTP 5.4 and 6.9 (Ginet); no line for NaN or for tbr_mean
    assert any("below the 1.81 cut-off" in t for t in texts)
    assert any("above the 5.4 min cut-off" in t and "IDH-mutant" in t for t in texts)
    assert reading({"suv_max": 4.0}, "FDOPA") == []
